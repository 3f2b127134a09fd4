"""Hugging Face folders written shard by shard: the files, the index, the atomic swap."""

from __future__ import annotations

import errno
import json
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from modelbrowse.core.errors import UsageError
from modelbrowse.core.saving import hf_folder
from modelbrowse.core.saving.hf_folder import parse_size, write_hf_folder
from modelbrowse.core.saving.transaction import SaveError


def tensors(count: int, numel: int = 256) -> dict[str, torch.Tensor]:
    """`count` float32 tensors of `numel` values (1 KiB each by default), all different."""
    return {f"layers.{i}.weight": torch.arange(numel) + float(i) for i in range(count)}


def read_folder(folder: Path) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as handle:
            assert handle.metadata() == {"format": "pt"}
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                found[key] = handle.get_tensor(key)
    return found


def no_leftovers(parent: Path) -> bool:
    return not [p.name for p in parent.iterdir() if ".modelbrowse" in p.name]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1000000", 1_000_000),
        ("5GB", 5 * 10**9),
        ("500MB", 500 * 10**6),
        ("2GiB", 2 * 2**30),
        ("1.5 kib", 1536),
        ("10kb", 10_000),
    ],
)
def test_sizes_are_read_as_transformers_reads_them(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "5 parsecs", "-3MB", "0", "5e9", "1,000"])
def test_a_size_that_is_not_one_is_one_line(text: str) -> None:
    with pytest.raises(UsageError, match="is not a size") as caught:
        parse_size(text)
    assert "\n" not in str(caught.value)


def test_shards_are_named_indexed_and_hold_the_values(tmp_path: Path) -> None:
    state = tensors(10)  # 10 KiB in shards of at most 3 KiB: 4 shards
    report = write_hf_folder(tmp_path / "out", iter(state.items()), max_shard_size=3 * 1024)
    out = tmp_path / "out"
    names = [f"model-0000{k}-of-00004.safetensors" for k in range(1, 5)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "model.safetensors.index.json"])
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"] == {"total_parameters": 2560, "total_size": 10 * 1024}
    assert index["weight_map"]["layers.0.weight"] == names[0]
    assert index["weight_map"]["layers.9.weight"] == names[3]
    assert list(index["weight_map"]) == sorted(state)
    found = read_folder(out)
    assert found.keys() == state.keys()
    assert all(torch.equal(found[k], state[k]) for k in state)
    assert (report.shards, report.tensors, report.bytes) == (4, 10, 10 * 1024)
    assert report.summary().startswith(f"wrote {out} (4 shards, 10 tensors, 10.0 KiB")
    assert no_leftovers(tmp_path)


def test_one_shard_is_model_safetensors_without_an_index(tmp_path: Path) -> None:
    state = {
        "a": torch.ones(2, 3, dtype=torch.bfloat16),
        "b": torch.tensor(7, dtype=torch.int64),  # 0-d
        "c": torch.zeros(0, 4),
        "d": torch.tensor([True, False]),
    }
    write_hf_folder(tmp_path / "out", state.items())
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.safetensors"]
    found = read_folder(tmp_path / "out")
    for key, tensor in state.items():
        assert found[key].dtype == tensor.dtype and torch.equal(found[key], tensor)


def test_a_tensor_larger_than_a_shard_gets_one_of_its_own(tmp_path: Path) -> None:
    state = {"small": torch.ones(4), "big": torch.ones(1000), "last": torch.ones(4)}
    write_hf_folder(tmp_path / "out", state.items(), max_shard_size=100)
    weight_map = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert weight_map["weight_map"] == {
        "small": "model-00001-of-00003.safetensors",
        "big": "model-00002-of-00003.safetensors",
        "last": "model-00003-of-00003.safetensors",
    }


def test_views_and_shared_storage_are_written_as_their_values(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    state = {"t": base.t(), "row": base[1], "same": base, "again": base}
    write_hf_folder(tmp_path / "out", state.items())
    found = read_folder(tmp_path / "out")
    assert all(torch.equal(found[k], v) for k, v in state.items())


def test_floating_tensors_are_cast_and_others_kept(tmp_path: Path) -> None:
    state = {"w": torch.linspace(0, 1, 8), "steps": torch.arange(3)}
    write_hf_folder(tmp_path / "out", state.items(), dtype=torch.bfloat16)
    found = read_folder(tmp_path / "out")
    assert found["w"].dtype == torch.bfloat16
    assert torch.equal(found["w"], state["w"].to(torch.bfloat16))
    assert found["steps"].dtype == torch.int64


def test_the_tensors_are_read_lazily_one_shard_at_a_time(tmp_path: Path) -> None:
    """Each tensor is dropped once its shard is on disk: never more than a shard's worth is
    alive, and the first shards exist before the last tensor is asked for."""
    alive: list[weakref.ref[np.ndarray]] = []
    most_alive = 0
    shards_seen: list[int] = []

    def stream() -> Iterator[tuple[str, torch.Tensor]]:
        nonlocal most_alive
        for i in range(12):
            array = np.full(256, i, dtype=np.float32)  # 1 KiB; the tensor holds the array
            alive.append(weakref.ref(array))
            most_alive = max(most_alive, sum(ref() is not None for ref in alive))
            work = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
            shards_seen.append(len(list(work[0].glob("out/*.safetensors"))) if work else 0)
            yield f"t{i}", torch.from_numpy(array)
            del array

    write_hf_folder(tmp_path / "out", stream(), max_shard_size=3 * 1024)
    assert most_alive <= 4  # a shard of three, and the one that starts the next
    assert shards_seen[-1] == 3
    assert all(ref() is None for ref in alive)
    assert len(read_folder(tmp_path / "out")) == 12


def test_config_and_tokenizer_files_are_written_and_copied(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    copied = [
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "special_tokens_map.json",
        "generation_config.json",
        "merges.txt",
        "vocab.json",
        "chat_template.jinja",
    ]
    for name in [*copied, "config.json", "model.safetensors", "README.md", "optimizer.pt"]:
        (source / name).write_text(f"{name} bytes")
    (source / "sub").mkdir()
    config = {"model_type": "llama", "vocab_size": 7}
    write_hf_folder(tmp_path / "out", tensors(1).items(), config=config, copy_from=source)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*copied, "config.json", "model.safetensors"]
    )
    assert all((out / n).read_text() == f"{n} bytes" for n in copied)
    assert json.loads((out / "config.json").read_text()) == config
    write_hf_folder(tmp_path / "plain", tensors(1).items(), copy_from=source)
    assert (tmp_path / "plain" / "config.json").read_text() == "config.json bytes"


def test_an_existing_model_folder_is_replaced_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_hf_folder(out, tensors(6).items(), max_shard_size=2048, config={"a": 1})
    assert len(list(out.glob("*.safetensors"))) == 3
    write_hf_folder(out, tensors(2).items())
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    assert read_folder(out).keys() == tensors(2).keys()
    assert no_leftovers(tmp_path)


def failing(after: int, error: BaseException) -> Iterator[tuple[str, torch.Tensor]]:
    yield from list(tensors(after).items())
    raise error


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SaveError("stop")])
def test_a_failure_leaves_the_old_folder_and_no_half_folder(
    tmp_path: Path, error: BaseException
) -> None:
    out = tmp_path / "out"
    write_hf_folder(out, tensors(2).items(), config={"old": True})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(type(error)):
        write_hf_folder(out, failing(5, error), max_shard_size=1024)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(type(error)):
        write_hf_folder(tmp_path / "new", failing(5, error), max_shard_size=1024)
    assert not (tmp_path / "new").exists()
    assert no_leftovers(tmp_path)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
    ],
)
def test_disk_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, words: str
) -> None:
    def full(handle: object, tensor: torch.Tensor) -> None:
        raise error

    monkeypatch.setattr(hf_folder, "_write_bytes", full)
    with pytest.raises(SaveError) as caught:
        write_hf_folder(tmp_path / "out", tensors(3).items())
    assert str(caught.value) == f"cannot write {tmp_path / 'out'}: {words}"
    assert not (tmp_path / "out").exists()
    assert no_leftovers(tmp_path)


def test_targets_that_are_not_model_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "photos")
    cases = {
        "file": "it is a file, not a folder",
        "photos": "it is a folder that holds no model",
        "link": "it is a link",
        "missing/out": "the directory",
    }
    for name, words in cases.items():
        with pytest.raises(SaveError, match=words):
            write_hf_folder(tmp_path / name, tensors(1).items())
    assert (tmp_path / "photos" / "cat.jpg").read_text() == "x"
    (tmp_path / "empty").mkdir()
    write_hf_folder(tmp_path / "empty", tensors(1).items())
    assert (tmp_path / "empty" / "model.safetensors").is_file()


def test_bad_tensors_are_refused_by_name(tmp_path: Path) -> None:
    meta = [("w", torch.empty(3, device="meta"))]
    with pytest.raises(SaveError, match="w has no values yet"):
        write_hf_folder(tmp_path / "out", meta)
    twice = [("w", torch.ones(1)), ("w", torch.ones(1))]
    with pytest.raises(SaveError, match="w is given twice"):
        write_hf_folder(tmp_path / "out", twice)
    assert not (tmp_path / "out").exists()
