"""Timed saves in a fresh process: `python -m benchmarks.save_worker MODEL DIR MODE [MODE...]`.

MODEL is `alexnet` (torchvision's layout, built in plain torch.nn so that the worker does not
spend seconds importing torchvision: the same state_dict keys, shapes and default initialisation)
or `synthetic` (about 2 GiB of float32 in 64 tensors); MODE is `bare`
(`torch.save(model.state_dict())`), `bare-fsync` (the same, then fsync), `raw` (a durable write
of as many bytes as `torch.save` writes: every tensor's bytes straight from its memory, zeros for
the rest, then fsync: the least a durable save can cost), `app` (modelbrowse's save: atomic,
fsync, verified) or `app-noverify`. The model is built once; each mode writes `DIR/MODEL-MODE.pt`,
in the order given, and prints one JSON line: mode, seconds, peak extra anonymous memory in bytes
during the save, the state_dict's size, and the file's size. The file is removed after it is
measured, and freed memory is handed back to the system (`malloc_trim`) before the next mode, so
that one mode's leftovers neither hide nor add to the next one's memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

SYNTHETIC_TENSORS = 64
SYNTHETIC_BYTES = 2 << 30


def rss_anon() -> int:
    """Anonymous resident memory of this process (file-backed pages, such as mmap, excluded)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class PeakSampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_anon()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_anon())
            time.sleep(0.005)


def alexnet() -> nn.Module:
    """torchvision's `alexnet()` (its module names and shapes), without importing torchvision."""
    model = nn.Module()
    model.features = nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )  # fmt: skip
    model.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    model.classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, 1000),
    )  # fmt: skip
    return model


class ByteCounter:
    """A write-only sink that counts what `torch.save` writes to it."""

    def __init__(self) -> None:
        self.count = 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def saved_size(state: dict[str, torch.Tensor]) -> int:
    """How many bytes `torch.save(state)` writes."""
    counter = ByteCounter()
    torch.save(state, counter)  # type: ignore[arg-type]
    return counter.count


def raw_write(state: dict[str, torch.Tensor], path: str, size: int) -> None:
    """`size` bytes to a new file, durably: each tensor's bytes as they are in memory, then
    zeros up to `size`; flush and fsync."""
    written = 0
    with open(path, "wb") as handle:
        for tensor in state.values():
            data = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
            handle.write(data.data)
            written += data.nbytes
        handle.write(bytes(max(size - written, 0)))
        handle.flush()
        os.fsync(handle.fileno())


def build(model_name: str) -> nn.Module:
    torch.manual_seed(0)
    if model_name == "alexnet":
        return alexnet()
    per_tensor = SYNTHETIC_BYTES // SYNTHETIC_TENSORS // 4
    model = nn.ParameterList(
        nn.Parameter(torch.empty(per_tensor).uniform_()) for _ in range(SYNTHETIC_TENSORS)
    )
    return model


def save_once(model: nn.Module, mode: str, path: str) -> dict[str, float]:
    """One save in `mode`: seconds, peak extra anonymous memory and the file's size."""
    if mode.startswith("app"):
        from modelbrowse.core.saving.weights import save_weights
    if mode == "raw":
        state = model.state_dict()
        size = saved_size(state)
    before = rss_anon()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    if mode == "bare":
        torch.save(model.state_dict(), path)
    elif mode == "raw":
        raw_write(state, path, size)
    elif mode == "bare-fsync":
        with open(path, "wb") as handle:
            torch.save(model.state_dict(), handle)
            handle.flush()
            os.fsync(handle.fileno())
    else:
        save_weights(model, path, verify=mode == "app")
    seconds = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    peak = max(sampler.peak, rss_anon())
    return {"seconds": seconds, "extra": peak - before, "file": os.path.getsize(path)}


def hand_back_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: figures may read low
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def main(model_name: str, directory: str, modes: list[str]) -> None:
    model = build(model_name)
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    for mode in modes:
        hand_back_memory()
        path = Path(directory) / f"{model_name}-{mode}.pt"
        figures = save_once(model, mode, str(path))
        path.unlink()
        print(json.dumps({"mode": mode, "state": state_bytes, **figures}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
