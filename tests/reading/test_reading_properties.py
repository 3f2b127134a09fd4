"""Mutated pickles, archives and headers: the readers return records or raise ReadError, and
reading any kind of weight file leaves torch unimported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from modelbrowse.core.reading import Limits, ReadError
from modelbrowse.core.reading.file_kinds import sniff
from modelbrowse.core.reading.nested import flatten
from modelbrowse.core.reading.pickles import load_pickle
from modelbrowse.core.reading.safetensors_header import read_header
from modelbrowse.core.reading.torch_files import read_torch_legacy, read_torch_zip
from modelbrowse.core.reading.torch_pickles import TorchHooks

ROOT = Path(__file__).resolve().parents[2]
SMALL = Limits(pickle_bytes=1 << 20, pickle_objects=100_000, visits=100_000)


def state() -> dict[str, torch.Tensor]:
    return {"a.weight": torch.ones(3, 2), "a.bias": torch.arange(3.0), "n": torch.tensor(7)}


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("originals")
    torch.save(state(), folder / "zip.pt")
    torch.save(state(), folder / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(state(), folder / "st.safetensors", metadata={"modelbrowse.aliases": "{}"})
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    changed = bytearray(data)
    for at, value in edits:
        changed[at % len(changed)] = value
    return bytes(changed[:cut] if cut is not None else changed)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6)
CUTS = st.one_of(st.none(), st.integers(1, 4000))


def read_any(path: Path) -> object:
    kind = sniff(path, SMALL).name
    if kind == "SAFETENSORS":
        return read_header(path, SMALL).tensors
    if kind == "TORCH_LEGACY":
        return list(flatten(read_torch_legacy(path, SMALL, scan=True).value, "x", SMALL))
    if kind == "TORCH_ZIP":
        return list(flatten(read_torch_zip(path, SMALL, scan=True).value, "x", SMALL))
    return kind


@pytest.mark.parametrize("name", ["zip.pt", "legacy.pt", "st.safetensors"])
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(edits=EDITS, cut=CUTS)
def test_a_mutated_file_reads_or_is_refused_with_read_error(
    originals: dict[str, bytes],
    tmp_path: Path,
    name: str,
    edits: list[tuple[int, int]],
    cut: int | None,
) -> None:
    path = tmp_path / name
    path.write_bytes(mutate(originals[name], edits, cut))
    try:
        read_any(path)
    except ReadError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), edits=EDITS)
def test_a_mutated_pickle_runs_to_records_or_read_error(
    data: bytes, edits: list[tuple[int, int]]
) -> None:
    import pickle

    base = pickle.dumps({"a": [1, 2.5, "x", (None, True)], "b": {"c": b"\x00"}}, protocol=2)
    for program in (data, mutate(base, edits, None)):
        hooks = TorchHooks("p", lambda *_: pytest.fail("no storage here"), SMALL)
        try:
            load_pickle(program, "p", hooks, SMALL)
        except ReadError as exc:
            assert "\n" not in str(exc)


READ_EVERY_KIND = """
import sys
from pathlib import Path
from modelbrowse.core.reading.file_kinds import sniff
from modelbrowse.core.reading.nested import flatten
from modelbrowse.core.reading.safetensors_header import read_header
from modelbrowse.core.reading.torch_files import read_torch_legacy, read_torch_zip
for name in sys.argv[1:]:
    path = Path(name)
    kind = sniff(path).name
    if kind == "SAFETENSORS":
        assert read_header(path).tensors
    else:
        reader = read_torch_legacy if kind == "TORCH_LEGACY" else read_torch_zip
        assert list(flatten(reader(path).value, name))
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
print("read", len(sys.argv) - 1)
"""


def test_reading_every_kind_leaves_torch_unimported(
    originals: dict[str, bytes], tmp_path: Path
) -> None:
    names = []
    for name, data in originals.items():
        (tmp_path / name).write_bytes(data)
        names.append(str(tmp_path / name))
    result = subprocess.run(
        [sys.executable, "-c", READ_EVERY_KIND, *names],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "read 3"
