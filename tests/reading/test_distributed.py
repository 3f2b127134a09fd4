"""torch.distributed.checkpoint folders are read as data: `.metadata` is never unpickled."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint import filesystem
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    TensorProperties,
    TensorStorageMetadata,
)

from modelbrowse.core.errors import SourceError
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.tui.cli import main

PACKAGE = Path(__file__).resolve().parents[2]


def quietly_save(state: dict[str, Any], folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no process group": one process saves alone
        dcp.save(state, checkpoint_id=str(folder))


class RunsCommand:
    """Pickles as a call of os.system: what plain pickle.load runs."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


@pytest.fixture
def no_code_loaders(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a loader that runs code from the file was called")

    monkeypatch.setattr(filesystem.FileSystemReader, "read_metadata", refused)
    monkeypatch.setattr(dcp, "load", refused)
    monkeypatch.setattr(torch, "load", refused)
    monkeypatch.setattr(pickle, "load", refused)
    monkeypatch.setattr(pickle, "loads", refused)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.usefixtures("no_code_loaders")
def test_a_saved_folder_opens_with_the_same_tree_shapes_and_values(tmp_path: Path) -> None:
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    folder = tmp_path / "step-5"
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 5}
    quietly_save(state, folder)
    source = resolve_source(str(folder))
    tree, is_meta = source.build_structure()
    assert is_meta
    expected = model.state_dict()
    shapes = {k: (v.shape, v.dtype) for k, v in tree.state_dict().items()}
    assert shapes == {k: (v.shape, v.dtype) for k, v in expected.items()}
    assert dict(source.info)["weights from"] == "'model'"
    real = source.build_real().state_dict()
    assert list(real) == list(expected)
    assert all(torch.equal(real[k], v) for k, v in expected.items())
    assert NodeIndex(tree).totals().params == sum(p.numel() for p in model.parameters())


@pytest.mark.usefixtures("no_code_loaders")
def test_a_tensor_saved_in_several_chunks_is_put_together(tmp_path: Path) -> None:
    """What several processes write: each chunk a torch.save archive at an offset."""
    full = torch.arange(24, dtype=torch.float32).reshape(6, 4)
    folder = tmp_path / "sharded"
    folder.mkdir()
    storage = {}
    chunks = []
    for rank, rows in enumerate(((0, 2), (2, 6))):
        part = full[rows[0] : rows[1]].clone()
        shard = folder / f"__{rank}_0.distcp"
        with shard.open("wb") as handle:
            handle.write(b"\0" * 100)  # the chunk starts past the file's start
            torch.save(part, handle)
            length = handle.tell() - 100
        offsets = torch.Size([rows[0], 0])
        chunks.append(ChunkStorageMetadata(offsets=offsets, sizes=part.shape))
        storage[MetadataIndex("w", offsets)] = filesystem._StorageInfo(shard.name, 100, length)
    properties = TensorProperties(dtype=torch.float32)
    entry = TensorStorageMetadata(properties, full.shape, chunks)
    metadata = Metadata(state_dict_metadata={"w": entry}, storage_data=storage)
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    source = resolve_source(str(folder))
    assert torch.equal(source.build_real().state_dict()["w"], full)


def hostile_folder(folder: Path, marker: Path) -> Path:
    model = net()
    quietly_save(model.state_dict(), folder)
    (folder / ".metadata").write_bytes(pickle.dumps(RunsCommand(f"touch {marker}")))
    return folder


def test_a_metadata_that_runs_a_command_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "marker"
    folder = hostile_folder(tmp_path / "ckpt", marker)
    with pytest.raises(SourceError) as caught:
        resolve_source(str(folder))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{folder / '.metadata'} names posix.system, which")
    assert message.endswith("refused (nothing in it was run)")
    assert main([str(folder), "--print"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "names posix.system" in err
    assert not marker.exists()


def test_the_same_metadata_in_a_hugging_face_cache_snapshot_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    folder = hostile_folder(tmp_path / "download", marker)
    (folder / "config.json").write_text('{"model_type": "gpt2"}')
    cache = tmp_path / "cache"
    root = cache / "models--evil--model"
    snapshot = root / "snapshots" / ("a" * 40)
    (root / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for index, file in enumerate(sorted(folder.iterdir())):
        blob = root / "blobs" / f"blob{index}"
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(Path("../../blobs") / blob.name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match=r"names posix\.system, which .* was run\)$"):
        resolve_source("hf:evil/model")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("relative_path", "words"),
    [
        ("../outside.distcp", "names a data file outside its folder; refused"),
        ("/etc/passwd", "names a data file outside its folder; refused"),
    ],
)
def test_a_chunk_outside_the_folder_is_refused(
    tmp_path: Path, relative_path: str, words: str
) -> None:
    folder = tmp_path / "ckpt"
    quietly_save({"w": torch.ones(3)}, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metadata = filesystem.FileSystemReader(str(folder)).read_metadata()
    for info in metadata.storage_data.values():
        info.relative_path = relative_path
    (folder / ".metadata").write_bytes(pickle.dumps(metadata))
    with pytest.raises(SourceError, match=words):
        resolve_source(str(folder))


def test_the_package_never_names_a_distributed_loader() -> None:
    sources = [*(PACKAGE / "core").rglob("*.py"), *(PACKAGE / "tui").rglob("*.py")]
    assert sources
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for name in ("read_metadata(", "state_dict_loader", "FileSystemReader"):
            assert name not in text, f"{source.name} names {name}"


def test_damaged_metadata_is_records_or_one_line(tmp_path: Path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from modelbrowse.core.reading import ReadError
    from modelbrowse.core.reading.distributed import read_dcp_metadata

    folder = tmp_path / "ckpt"
    quietly_save({"model": net().state_dict(), "step": 5}, folder)
    original = (folder / ".metadata").read_bytes()

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=6))
    def damaged(flips: list[tuple[int, int]]) -> None:
        data = bytearray(original)
        for where, value in flips:
            data[where] = value
        (folder / ".metadata").write_bytes(bytes(data))
        try:
            read_dcp_metadata(folder)
        except ReadError as exc:
            assert "\n" not in str(exc)

    damaged()


def test_the_readers_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import modelbrowse.core.reading.distributed, modelbrowse.core.reading.torchscript\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"
