"""Damaged checkpoint files: each opens, or is refused with one line, in seconds, in bounded memory.

Valid `.pt`, `.safetensors`, GGUF, TorchScript and ONNX files are cut short, bit-flipped, given
wrong lengths and, for the zip formats, a huge declared size; each result is opened as the app
opens a file (`resolve_source` then `build_structure`, then the real tensors). `FUZZ_CASES` per
format run in the suite; with `pytest --slow` (or `MODELBROWSE_SLOW_TESTS=1`), `SLOW_FUZZ_CASES`.
"""

from __future__ import annotations

import faulthandler
import os
import random
import resource
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.nodes import NodeKind
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.core.stats import compute_stats, unavailable_reason

FUZZ_CASES = 200
SLOW_FUZZ_CASES = 2_000
SECONDS_PER_FILE = 5
HANG_S = 120
# Growth of the process's peak memory allowed over all cases of a format.
MAX_GROWTH_MIB = 512


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(self.embed(x).mean(1))
        return out


def write_pt(path: Path) -> None:
    torch.save(Small().state_dict(), path)


def write_safetensors(path: Path) -> None:
    save_file({k: v.contiguous() for k, v in Small().state_dict().items()}, path)


def write_torchscript(path: Path) -> None:
    torch.jit.save(torch.jit.script(Small()), str(path))


def write_onnx(path: Path) -> None:
    from tests.onnx_support import export_tiny

    export_tiny(path)


def write_quantized(path: Path) -> None:
    """A GPTQ layer and a bitsandbytes nf4 one (its quant_state JSON in the file's data)."""
    from tests.quantized_support import bnb4, gptq

    torch.manual_seed(0)
    tensors = {f"q.{k}": v for k, v in gptq(torch.randn(32, 64))[0].items()}
    tensors |= {f"b.{k}": v for k, v in bnb4(torch.randn(16, 64))[0].items()}
    save_file(tensors, path)


def write_gguf_file(path: Path) -> None:
    from tests.gguf_support import write_gguf

    write_gguf(path, layers=1)


WRITERS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "gguf": ("gguf", write_gguf_file),
    "pt": ("pt", write_pt),
    "safetensors": ("safetensors", write_safetensors),
    "torchscript": ("pt", write_torchscript),
    "quantized": ("safetensors", write_quantized),
    "onnx": ("onnx", write_onnx),
}


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One damage: cut short, flipped bits, a wrong length, or a huge declared zip size."""
    out = bytearray(data)
    kind = rng.randrange(5)
    hot = list(range(min(len(out), 512))) + list(range(max(0, len(out) - 512), len(out)))
    if kind == 0:
        return bytes(out[: rng.randrange(len(out))])
    if kind == 1:
        for _ in range(rng.randint(1, 8)):
            where = rng.choice(hot) if rng.random() < 0.7 else rng.randrange(len(out))
            out[where] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == 2:
        where = rng.choice(hot[: max(1, len(hot) - 8)])
        value = rng.choice([2**63 - 1, 2**32 - 1, 2**31, len(out) * 1000, 0])
        out[where : where + 8] = struct.pack("<Q", value)[: len(out[where : where + 8])]
        return bytes(out)
    if kind == 3:
        return bytes(out + bytes(rng.randrange(1, 4096)))
    return huge_declared_zip_size(bytes(out), rng)


def huge_declared_zip_size(data: bytes, rng: random.Random) -> bytes:
    """Every local and central zip entry claims an enormous uncompressed size."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (found := out.find(signature, start)) != -1:
            if rng.random() < 0.7 and found + offset + 4 <= len(out):
                out[found + offset : found + offset + 4] = struct.pack("<I", 0xFFFFFFF0)
            start = found + 4
    return bytes(out)


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Fails when the block took longer than `seconds`; a block that hangs ends the process
    with a traceback after `HANG_S` (an exception raised from a timer could land inside
    torch's C++ code, which aborts)."""
    faulthandler.dump_traceback_later(HANG_S, exit=True)
    start = time.monotonic()
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
    elapsed = time.monotonic() - start
    assert elapsed < seconds, f"{what} took {elapsed:.1f} s"


def open_as_the_app_does(path: Path) -> None:
    source = resolve_source(str(path))
    model, _ = source.build_structure()
    real = source.build_real()
    for tensor in (*real.parameters(), *real.buffers()):
        assert not tensor.is_meta
    for node in NodeIndex(real).nodes():  # quantized weights: their values dequantized
        if node.kind is NodeKind.QUANTIZED and unavailable_reason(node.obj) is None:
            compute_stats(node.obj)
    del model, real


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cases() -> int:
    return SLOW_FUZZ_CASES if os.environ.get("MODELBROWSE_SLOW_TESTS") else FUZZ_CASES


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_damaged_files_open_or_are_refused_in_one_line(tmp_path: Path, fmt: str) -> None:
    suffix, write = WRITERS[fmt]
    original = tmp_path / f"original.{suffix}"
    write(original)
    open_as_the_app_does(original)  # the undamaged file opens
    data = original.read_bytes()
    rng = random.Random(f"{fmt}-fuzz")
    before = peak_mib()
    refused = 0
    for case in range(cases()):
        damaged = tmp_path / f"damaged-{case}.{suffix}"
        damaged.write_bytes(mutate(data, rng))
        with time_limit(SECONDS_PER_FILE, f"case {case} of {fmt}"):
            try:
                open_as_the_app_does(damaged)
            except ModelBrowseError as exc:
                refused += 1
                message = str(exc)
                assert message.strip(), f"case {case}: an empty message"
                assert "\n" not in message.strip(), f"case {case}: {message!r}"
                assert "weights_only=False" not in message, f"case {case}: {message!r}"
        damaged.unlink()
    assert refused > 0  # the damage is real: some files could not be opened
    assert peak_mib() - before < MAX_GROWTH_MIB


def test_the_damage_is_what_the_test_says() -> None:
    """A huge declared size really lands in the zip's headers; cutting really shortens."""
    import io
    import zipfile

    buffer = io.BytesIO()
    torch.save({"w": torch.ones(3)}, buffer)
    data = buffer.getvalue()
    damaged = huge_declared_zip_size(data, random.Random(0))
    sizes = [info.file_size for info in zipfile.ZipFile(io.BytesIO(damaged)).infolist()]
    assert 0xFFFFFFF0 in sizes
    assert (
        len(mutate(data, random.Random(3))) != len(data) or mutate(data, random.Random(3)) != data
    )
