"""Saving weights: the extension picks the format, the report, what reads back, shared tensors."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from modelbrowse.core.saving.hashing import (
    HASH_BESIDE_BYTES,
    HashingWriter,
    MemoryRanges,
    file_sha256,
)
from modelbrowse.core.saving.weights import (
    SaveError,
    compare,
    format_for,
    read_weights,
    save_weights,
)
from tests.edit_support import small_net, state
from tests.fixtures.models import SharedNet, unique_param_count
from tests.saving_support import (
    FORMATS,
    assert_same_tensors,
    files_in,
    one_line,
    sha256,
)

# --- the extension picks the format ----------------------------------------------------------


@pytest.mark.parametrize("name", ["w.pt", "w.pth", "W.PT", "model.v2.Pth"])
def test_pt_and_pth_are_a_plain_torch_state_dict(tmp_path: Path, name: str) -> None:
    model = small_net()
    report = save_weights(model, tmp_path / name)
    assert report.format == "pt"
    loaded = torch.load(tmp_path / name, weights_only=True)
    assert isinstance(loaded, dict)
    assert list(loaded) == list(model.state_dict())  # state_dict order kept
    assert_same_tensors(loaded, state(model))


@pytest.mark.parametrize("name", ["w.safetensors", "W.SafeTensors"])
def test_safetensors_is_readable_by_the_safetensors_library(tmp_path: Path, name: str) -> None:
    model = small_net()
    report = save_weights(model, tmp_path / name)
    assert report.format == "safetensors"
    assert_same_tensors(load_file(str(tmp_path / name)), state(model))
    with safe_open(str(tmp_path / name), framework="pt") as handle:
        assert handle.metadata()["format"] == "pt"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("w.onnx", "'.onnx'"),
        ("weights", "'(none)'"),
        ("w.pt.bak", "'.bak'"),
        ("w.safetensor", "'.safetensor'"),
    ],
)
def test_another_extension_is_refused_in_one_line(tmp_path: Path, name: str, shown: str) -> None:
    with pytest.raises(SaveError) as excinfo:
        save_weights(small_net(), tmp_path / name)
    message = one_line(excinfo)
    expected = f"{name}: unknown extension {shown}; use .pt, .pth, .bin, .ckpt or .safetensors"
    assert message == expected
    assert files_in(tmp_path) == []
    with pytest.raises(SaveError, match=re.escape(shown)):
        format_for(name)


# --- the report ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_describes_the_file_on_disk(tmp_path: Path, fmt: str) -> None:
    model = SharedNet()
    path = tmp_path / f"shared.{fmt}"
    report = save_weights(model, path)
    assert report.path == path
    assert report.format == fmt
    assert report.tensors == len(model.state_dict()) == 7  # aliases count, `cache` does not
    assert report.params == unique_param_count(model) == 152  # a tied weight counts once
    assert report.nbytes == path.stat().st_size
    assert report.sha256 == sha256(path)
    assert report.seconds >= 0
    summary = report.summary()
    assert re.fullmatch(
        rf"wrote {re.escape(str(path))} \(7 tensors, 152 params, \d+(\.\d)? (B|KiB), \d+\.\d s\)",
        summary,
    ), summary
    assert files_in(tmp_path) == [path.name]


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_hash_and_size_of_a_larger_file(tmp_path: Path, fmt: str) -> None:
    """Several MiB, many writes: the hash computed while writing is the file's."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 512))
    path = tmp_path / f"big.{fmt}"
    report = save_weights(model, path)
    assert report.nbytes == path.stat().st_size > 4 * 1024 * 1024
    assert report.sha256 == sha256(path)
    assert report.params == sum(p.numel() for p in model.parameters())
    assert " MiB, " in report.summary()


def test_a_relative_path_and_a_home_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    report = save_weights(small_net(), "rel.pt")
    assert (tmp_path / "rel.pt").stat().st_size == report.nbytes
    monkeypatch.setenv("HOME", str(tmp_path))
    report = save_weights(small_net(), "~/home.safetensors")
    assert report.path == tmp_path / "home.safetensors"
    assert report.sha256 == sha256(tmp_path / "home.safetensors")


@pytest.mark.parametrize("fmt", FORMATS)
def test_progress_runs_from_zero_to_one(tmp_path: Path, fmt: str) -> None:
    fractions: list[float] = []
    save_weights(small_net(), tmp_path / f"w.{fmt}", progress=fractions.append)
    assert fractions
    assert fractions == sorted(fractions)
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions[-1] == 1.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_file_gets_ordinary_permissions(tmp_path: Path, fmt: str) -> None:
    """Not the 0600 of a temporary file: others may read it as the umask allows."""
    mask = os.umask(0o022)
    try:
        save_weights(small_net(), tmp_path / f"w.{fmt}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / f"w.{fmt}").stat().st_mode) == 0o644


@pytest.mark.parametrize("fmt", FORMATS)
def test_saving_again_replaces_the_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"w.{fmt}"
    model = small_net()
    save_weights(model, path)
    with torch.no_grad():
        model.get_parameter("6.weight").add_(1.0)
    report = save_weights(model, path)
    assert report.sha256 == sha256(path)
    assert_same_tensors(read_weights(path), state(model))
    assert files_in(tmp_path) == [path.name]


# --- what reads back -------------------------------------------------------------------------


def odd_tensors() -> nn.Module:
    """Every dtype a state_dict commonly holds, and the shapes and values that trip writers."""
    torch.manual_seed(0)
    model = nn.Module()
    special = torch.tensor([float("nan"), -0.0, 0.0, float("inf"), float("-inf"), 1e-45])
    odd_nan = torch.tensor([0x7FC00001, -1], dtype=torch.int32).view(torch.float32)
    buffers = {
        "special": special,
        "odd_nan": odd_nan,  # NaNs with payloads other than the usual one
        "f16": torch.tensor([-0.0, float("nan"), 65504.0, 1e-7], dtype=torch.float16),
        "bf16": (torch.randn(3, 4) * 1e30).to(torch.bfloat16),
        "f64": torch.randn(5, dtype=torch.float64),
        "flags": torch.tensor([True, False, True]),
        "steps": torch.tensor(2**40 + 3, dtype=torch.int64),  # 0-dim, beyond int32
        "scalar": torch.tensor(-0.0),  # 0-dim, negative zero
        "int8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "empty": torch.empty(0),
        "empty_2d": torch.empty(3, 0, dtype=torch.float16),
        "empty_too": torch.empty(0),  # a second empty tensor, not tied to the first
    }
    for name, tensor in buffers.items():
        model.register_buffer(name, tensor)
    linear = nn.Linear(5, 3)
    linear.weight = nn.Parameter(torch.randn(5, 3).t())  # transposed: not contiguous
    model.linear = linear
    model.register_buffer("strided", torch.arange(20.0).reshape(4, 5)[:, ::2])  # a strided view
    return model


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_dtype_and_shape_reads_back_byte_for_byte(tmp_path: Path, fmt: str) -> None:
    model = odd_tensors()
    assert not model.get_parameter("linear.weight").is_contiguous()
    expected = state(model)
    path = tmp_path / f"odd.{fmt}"
    report = save_weights(model, path)
    assert report.tensors == len(expected)

    found = read_weights(path)
    assert_same_tensors(found, expected)
    assert list(compare(expected, found)) == []
    assert torch.signbit(found["special"][1]) and not torch.signbit(found["special"][2])
    assert torch.signbit(found["scalar"]) and found["scalar"].dim() == 0
    assert torch.isnan(found["special"][0]) and torch.isnan(found["f16"][1])
    assert found["odd_nan"].view(torch.int32).tolist() == [0x7FC00001, -1]
    assert found["steps"].item() == 2**40 + 3
    assert found["flags"].tolist() == [True, False, True]
    assert found["empty"] is not found["empty_too"]  # two buffers stay two
    plain = load_file(str(path)) if fmt == "safetensors" else torch.load(path, weights_only=True)
    assert_same_tensors(plain, expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_loaded_model_takes_the_odd_tensors(tmp_path: Path, fmt: str) -> None:
    model = odd_tensors()
    save_weights(model, tmp_path / f"odd.{fmt}")
    other = odd_tensors()
    for tensor in (*other.parameters(), *other.buffers()):
        tensor.data.zero_()
    other.load_state_dict(read_weights(tmp_path / f"odd.{fmt}"))
    assert_same_tensors(other.state_dict(), state(model))


def test_compare_is_about_bytes() -> None:
    """NaN equals NaN, -0.0 differs from 0.0: what verification relies on."""
    nan = {"x": torch.tensor([float("nan"), 1.0])}
    assert list(compare(nan, {"x": nan["x"].clone()})) == []
    zero = {"x": torch.tensor([0.0])}
    assert list(compare(zero, {"x": torch.tensor([-0.0])})) == ["x: the values differ"]
    assert list(compare(zero, {"x": torch.tensor([0.0], dtype=torch.float64)})) == [
        "x: dtype torch.float64, expected torch.float32"
    ]
    assert list(compare(zero, {"x": torch.zeros(2)})) == ["x: shape (2,), expected (1,)"]
    assert list(compare(zero, {"y": torch.zeros(1)})) == ["missing x", "unexpected y"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_corrupt_file_is_one_line(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"bad.{fmt}"
    path.write_bytes(b"\x00not weights\n" * 8)
    with pytest.raises(SaveError) as excinfo:
        read_weights(path)
    assert one_line(excinfo).startswith(f"cannot read {path}: ")


def test_a_pt_file_that_is_not_a_state_dict(tmp_path: Path) -> None:
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(SaveError) as excinfo:
        read_weights(tmp_path / "list.pt")
    assert one_line(excinfo) == f"{tmp_path / 'list.pt'} does not hold a state_dict"


def test_tensors_on_meta_are_refused(tmp_path: Path) -> None:
    with torch.device("meta"):
        model = nn.Linear(2, 2)
    with pytest.raises(SaveError) as excinfo:
        save_weights(model, tmp_path / "meta.pt")
    assert one_line(excinfo) == "weight has no values yet (it is on the meta device)"
    assert files_in(tmp_path) == []


# --- shared and tied tensors -----------------------------------------------------------------


def test_pt_keeps_storage_sharing(tmp_path: Path) -> None:
    model = SharedNet()
    save_weights(model, tmp_path / "shared.pt")
    for found in (read_weights(tmp_path / "shared.pt"), torch.load(tmp_path / "shared.pt")):
        assert_same_tensors(found, state(model))
        assert found["head.weight"].data_ptr() == found["embed.weight"].data_ptr()
        assert found["decoder.proj.weight"].data_ptr() == found["encoder.weight"].data_ptr()
        assert found["decoder.proj.bias"].data_ptr() == found["encoder.bias"].data_ptr()
        assert "cache" not in found  # the non-persistent buffer is not saved


def test_safetensors_stores_a_shared_tensor_once_and_restores_the_tie(tmp_path: Path) -> None:
    model = SharedNet()
    path = tmp_path / "shared.safetensors"
    save_weights(model, path)
    with safe_open(str(path), framework="pt") as handle:
        stored = sorted(handle.keys())
    assert stored == ["embed.weight", "encoder.bias", "encoder.weight", "scale"]
    assert sorted(load_file(str(path))) == stored  # the plain library sees each tensor once

    found = read_weights(path)
    assert_same_tensors(found, state(model))
    assert found["head.weight"] is found["embed.weight"]
    assert found["decoder.proj.weight"] is found["encoder.weight"]
    assert found["decoder.proj.bias"] is found["encoder.bias"]
    assert found["scale"] is not found["embed.weight"]


def test_safetensors_copies_views_that_overlap(tmp_path: Path) -> None:
    """A view onto part of another tensor's storage is written as its own tensor."""
    model = nn.Module()
    base = torch.arange(24.0).reshape(4, 6)
    model.register_buffer("whole", base)
    model.register_buffer("left", base[:, :3])
    model.register_buffer("row", base[2])
    model.register_buffer("again", base)  # the same tensor twice: one copy, tied
    path = tmp_path / "views.safetensors"
    save_weights(model, path)
    with safe_open(str(path), framework="pt") as handle:
        assert sorted(handle.keys()) == ["left", "row", "whole"]
    found = read_weights(path)
    assert_same_tensors(found, state(model))
    assert found["again"] is found["whole"]
    assert found["left"] is not found["whole"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.uint8])
@pytest.mark.parametrize("start", [0, 1, 3])
def test_compare_finds_one_changed_bit_whatever_the_width_and_offset(
    dtype: torch.dtype, start: int
) -> None:
    """The bytes are compared in the widest words their size and offset allow."""
    base = torch.arange(40).to(dtype)
    for length in (1, 7, 16, 33):
        expected = base[start : start + length]
        found = base.clone()[start : start + length]
        assert list(compare({"x": expected}, {"x": found})) == []
        flipped = found.view(torch.uint8)
        flipped[-1] ^= 1
        assert list(compare({"x": expected}, {"x": found})) == ["x: the values differ"]


def test_the_hash_of_borrowed_buffers_is_taken_before_they_change(tmp_path: Path) -> None:
    """A large buffer outside the saved tensors is hashed before its write returns; one inside
    them may be hashed later, since the save holds them. Either way the hash is the file's."""
    owned = torch.arange(1 << 19, dtype=torch.float32)  # 2 MiB
    borrowed = bytearray(range(256)) * (HASH_BESIDE_BYTES // 256 + 1)
    small = bytearray(b"header")
    path = tmp_path / "stream.bin"
    with open(path, "wb") as handle:
        writer = HashingWriter(handle, 1, None, MemoryRanges([owned]))
        # The hashing thread is held back a while, so that a buffer it read late would show.
        opened = threading.Event()
        writer._pool.submit(opened.wait)
        threading.Timer(0.3, opened.set).start()
        writer.write(small)
        small[:] = b"HEADER"  # torch reuses its buffers once a write returns
        writer.write(owned.numpy().data.cast("B"))
        writer.write(borrowed)
        borrowed[:] = bytes(len(borrowed))
        writer.write(owned.numpy().data.cast("B")[4:])
        digest = writer.hexdigest()
    assert digest == sha256(path) == file_sha256(path)
    assert path.read_bytes()[:6] == b"header"
