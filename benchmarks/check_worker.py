"""The health check's checkpoints and one measured pass per fresh process.

`python -m benchmarks.check_worker MODE PATH`, printing one JSON line:

- `write-safetensors PATH`: a 2 GiB safetensors file of real data, written tensor by tensor
  (a header, then each tensor's bytes): eight float32 matrices of 256 MiB drawn at random, and
  a LayerNorm-shaped pair and a bias among them, as a checkpoint has.
- `write-pt PATH`: the same tensors as a `torch.save` state_dict (2 GiB).
- `check PATH`: `check_source(resolve_source(PATH))`, what `modelbrowse PATH --check` does after
  its imports; a tiny file of the same kind is checked first, so that the modules the check
  imports lazily are loaded and the timer sees the pass itself. `findings` is how many.
- `read PATH`: the floor: the file's bytes read once, front to back, 16 MiB at a time, into one
  buffer (`readinto`), after the same imports.

Every mode fsyncs what it writes, so that the page cache can drop it before a sample.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MATRICES = 8
ROWS = COLUMNS = 8192  # 256 MiB of float32 each
READ_BYTES = 16 << 20


def _state() -> Iterator[tuple[str, Any]]:
    """The tensors, drawn one at a time: a writer holds one matrix at once."""
    import torch

    generator = torch.Generator().manual_seed(0)
    for i in range(MATRICES):
        yield f"layers.{i}.weight", torch.randn(ROWS, COLUMNS, generator=generator)
        yield f"layers.{i}.norm.weight", 1 + 0.01 * torch.randn(COLUMNS, generator=generator)
        yield f"layers.{i}.norm.bias", 0.01 * torch.randn(COLUMNS, generator=generator)


def write_safetensors(path: Path) -> dict[str, Any]:
    """Header first (shapes are known), then each tensor's bytes as it is drawn."""
    shapes = [(f"layers.{i}.weight", [ROWS, COLUMNS]) for i in range(MATRICES)]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for i in range(MATRICES):
        for key, shape in (
            (f"layers.{i}.weight", [ROWS, COLUMNS]),
            (f"layers.{i}.norm.weight", [COLUMNS]),
            (f"layers.{i}.norm.bias", [COLUMNS]),
        ):
            size = 4 * shape[0] * (shape[1] if len(shape) > 1 else 1)
            header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
            offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for _, tensor in _state():
            handle.write(tensor.numpy().data)
        handle.flush()
        os.fsync(handle.fileno())
    return _sizes(path, len(header) - 1, sum(ROWS * COLUMNS + 2 * COLUMNS for _ in shapes))


def write_pt(path: Path) -> dict[str, Any]:
    import torch

    state = dict(_state())
    with path.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return _sizes(path, len(state), sum(t.numel() for t in state.values()))


def _sizes(path: Path, tensors: int, params: int) -> dict[str, Any]:
    stat = path.stat()
    return {
        "logical_bytes": stat.st_size,
        "disk_bytes": stat.st_blocks * 512,
        "tensors": tensors,
        "params": params,
    }


def _imports() -> None:
    import torch  # noqa: F401

    from modelbrowse.core.health import check_source  # noqa: F401
    from modelbrowse.core.sources.base import resolve_source  # noqa: F401


def _warm_up(kind: str) -> None:
    """Check a tiny file of the same kind, so that lazy imports are not timed."""
    import torch
    from safetensors.torch import save_file

    from modelbrowse.core.health import check_source
    from modelbrowse.core.sources.base import resolve_source

    with tempfile.TemporaryDirectory() as folder:
        tiny = Path(folder) / f"tiny{kind}"
        state = {"w": torch.randn(4, 4), "norm.weight": torch.ones(4)}
        if kind == ".safetensors":
            save_file(state, str(tiny))
        else:
            torch.save(state, tiny)
        check_source(resolve_source(str(tiny)))


def measure_check(path: str) -> dict[str, Any]:
    from modelbrowse.core.health import check_source
    from modelbrowse.core.sources.base import resolve_source

    _warm_up(Path(path).suffix)
    start = time.perf_counter()
    report = check_source(resolve_source(path))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "findings": len(report.findings), "tensors": report.scanned}


def measure_read(path: str) -> dict[str, Any]:
    buffer = bytearray(READ_BYTES)
    view = memoryview(buffer)
    total = 0
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while read := handle.readinto(view):
            total += read
    return {"seconds": time.perf_counter() - start, "bytes": total}


def main(mode: str, path: str) -> None:
    if mode == "write-safetensors":
        print(json.dumps(write_safetensors(Path(path))))
    elif mode == "write-pt":
        print(json.dumps(write_pt(Path(path))))
    elif mode in ("check", "read"):
        _imports()
        measure = measure_check if mode == "check" else measure_read
        print(json.dumps(measure(path)))
    else:
        raise SystemExit(f"unknown mode {mode!r}: write-safetensors, write-pt, check, read")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
