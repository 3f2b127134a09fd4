"""Hostile tensors: views that declare more than they store, files truncated under the app."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from modelbrowse.core.bitwise import bitwise_equal
from modelbrowse.core.stats import compute_stats, estimate_stats, unavailable_reason
from modelbrowse.core.tensor_bytes import TensorBytesError
from tests.limits_support import run_script, within

COMMAND = Path(sys.executable).parent / "modelbrowse"


def test_a_small_file_declaring_a_trillion_values_has_exact_statistics(tmp_path: Path) -> None:
    path = tmp_path / "expanded.pt"
    torch.save({"w": torch.full((1,), 0.5).expand(2**40)}, path)
    assert path.stat().st_size < 2048
    result = subprocess.run(
        [str(COMMAND), str(path), "--print", "--detail", "w"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert "numel 1,099,511,627,776" in rows
    assert {"statistics exact", "mean 0.5", "std 0", "zeros 0.00%"} <= set(rows)


@pytest.mark.parametrize(
    "view",
    [
        torch.randn(3, 1).expand(3, 5),
        torch.randn(1, 4).expand(6, 4),
        torch.tensor([0.0, float("nan"), float("inf"), 2.0]).expand(5, 7, 4),
        torch.arange(6, dtype=torch.int64).reshape(2, 1, 3).expand(2, 4, 3),
    ],
)
def test_an_expanded_view_has_the_statistics_of_its_copy(view: torch.Tensor) -> None:
    read, copied = compute_stats(view), compute_stats(view.contiguous())
    # The same values, summed in another order: the moments agree to rounding.
    assert replace(read, mean=0.0, std=0.0) == replace(copied, mean=0.0, std=0.0)
    assert read.mean == pytest.approx(copied.mean, rel=1e-12, nan_ok=True)
    assert read.std == pytest.approx(copied.std, rel=1e-12, nan_ok=True)
    assert bitwise_equal(view, view.contiguous()) and bitwise_equal(view, view.clone())
    assert not bitwise_equal(view, view.contiguous() + 1)


def test_a_view_that_overlaps_itself_is_refused_not_walked() -> None:
    window = torch.arange(10.0).as_strided((7, 4), (1, 1))
    message = "an overlapping view of 28 elements over 10 stored: values not read"
    assert unavailable_reason(window) == message
    with pytest.raises(TensorBytesError, match=message):
        compute_stats(window)
    big = torch.zeros(4).as_strided((2**31, 4), (0, 1))  # an expansion stays exact
    with within(60):
        assert unavailable_reason(big) is None
        assert compute_stats(big).numel == 2**33
        assert estimate_stats(big).numel == 2**33


SAVE_VIEW = """
import sys, torch
from torch import nn
from modelbrowse.core.saving.weights import read_weights, save_weights
from modelbrowse.core.errors import ModelBrowseError
model = nn.Module()
model.register_buffer("w", torch.ones(1).expand(2**31))
report = save_weights(model, sys.argv[1] + "/view.pt")
back = read_weights(sys.argv[1] + "/view.pt")["w"]
print(report.nbytes)
print(tuple(back.shape), back.stride())
try:
    save_weights(model, sys.argv[1] + "/view.safetensors")
except ModelBrowseError as exc:
    print(exc)
# VmHWM, not ru_maxrss: that counts the pages of the test process this one was forked from.
with open("/proc/self/status") as status:
    print(next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) // 1024)
"""


def test_saving_an_expanded_view_keeps_the_view_or_refuses(tmp_path: Path) -> None:
    result = run_script(SAVE_VIEW, tmp_path)
    assert result.returncode == 0, result.stderr
    size, shape, refusal, peak_mib = result.stdout.splitlines()
    assert int(size) < 4096  # the stored element, not 8 GiB; verified without copying it
    assert shape == "(2147483648,) (0,)"
    assert refusal == (
        "w is a view of 2,147,483,648 elements over 4 stored bytes: view.safetensors would "
        "hold 8,589,934,592 bytes of it; save as .pt, which keeps the view"
    )
    assert not (tmp_path / "view.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["view.pt"]
    assert int(peak_mib) < 2048


TRUNCATE = """
import os, sys, torch
from pathlib import Path
from torch import nn
from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.saving.weights import save_weights
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.core.stats import unavailable_reason
path = Path(sys.argv[1]) / "weights.pt"
torch.save({"a": torch.ones(1 << 20), "b": torch.ones(1 << 20)}, path)
model, _ = resolve_source(str(path)).build_structure()
tensor = NodeIndex(model).node("b").tensor
print(unavailable_reason(tensor))
os.truncate(path, 1 << 20)
print(unavailable_reason(tensor))
try:
    save_weights(model, path.with_name("copy.pt"))
except ModelBrowseError as exc:
    print(exc)
host = nn.Module()
host.register_buffer("c", torch.ones(3))  # a tensor in memory has nothing to shrink
print(save_weights(host, path.with_name("other.pt")).tensors)
"""


def test_a_file_truncated_while_open_is_an_error_not_a_bus_error(tmp_path: Path) -> None:
    # In a child process: a missed check is a bus error there, not the end of the test run.
    result = run_script(TRUNCATE, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after, refused, saved = result.stdout.splitlines()
    assert before == "None"
    assert after.startswith("weights.pt was truncated while open (1,048,576 bytes, its data")
    assert refused.startswith("a: weights.pt was truncated while open")
    assert saved == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pt", "weights.pt"]
