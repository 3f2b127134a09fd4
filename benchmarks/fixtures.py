"""The checkpoints the checkpoint and first-screen figures open, generated once per run.

They are written by `benchmarks.checkpoint_worker` into a temporary folder (under `$TMPDIR`,
removed at exit):

- a Llama-7B-shaped Hugging Face folder (config.json, two bfloat16 safetensors shards and
  `model.safetensors.index.json`): 291 tensors, 6.74B parameters, 12.6 GiB, written as sparse files
  (real headers, the data a hole), so it takes a fraction of a second and a few KiB of disk;
- a 3 GiB `.pt` state_dict (12 float32 tensors of 256 MiB) with real data, for the full run only:
  it needs 3 GiB of disk (its figures are skipped below 8 GiB free) and half a minute to write.

Before every sample the checkpoint's pages are dropped from the page cache (`evict`,
`posix_fadvise(DONTNEED)`), so each open starts cold, as for a checkpoint not read recently; what
an open read is the part of the checkpoint in the page cache after it (`cached_bytes`, `mincore`,
readahead included).
"""

from __future__ import annotations

import atexit
import ctypes
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import BenchmarkError, Context, Result, figure, progress

MIB = float(1 << 20)
GIB = float(1 << 30)
PT_MIN_FREE_BYTES = 8 << 30
FILE_NAMES = {"llama": "llama-7b", "pt": "state-3gib.pt"}


class Skipped(Exception):
    """A checkpoint cannot be generated here (not enough disk); the message says why."""


class Fixtures:
    """The generated checkpoints: written on first use, removed when the run ends."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self.made: dict[str, tuple[Path, dict[str, Any]]] = {}
        self.failed: dict[str, BenchmarkError] = {}

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="modelbrowse-bench-checkpoints-"))
            atexit.register(shutil.rmtree, self._root, ignore_errors=True)
        return self._root

    def llama(self, ctx: Context) -> tuple[Path, dict[str, Any]]:
        """The Llama-7B-shaped folder (sparse) and its sizes."""
        return self._make("write-llama", FILE_NAMES["llama"], ctx)

    def pt(self, ctx: Context) -> tuple[Path, dict[str, Any]]:
        """The 3 GiB `.pt` and its sizes; Skipped when the disk is short of room."""
        if FILE_NAMES["pt"] not in self.made:
            free = shutil.disk_usage(self.root).free
            if free < PT_MIN_FREE_BYTES:
                raise Skipped(
                    f"skipped: the 3 GiB .pt checkpoint needs {PT_MIN_FREE_BYTES / GIB:.0f} GiB "
                    f"free in {self.root.parent} (set TMPDIR elsewhere), {free / GIB:.1f} GiB is"
                )
        return self._make("write-pt", FILE_NAMES["pt"], ctx)

    def _make(self, mode: str, name: str, ctx: Context) -> tuple[Path, dict[str, Any]]:
        if name in self.failed:
            raise self.failed[name]
        if name not in self.made:
            path = self.root / name
            progress(f"[checkpoints] writing {path}")
            start = time.perf_counter()
            try:
                figures = run_worker([mode, str(path)], ctx.timeout * 5)
            except BenchmarkError as exc:
                self.failed[name] = exc
                raise
            figures["write_seconds"] = time.perf_counter() - start
            self.made[name] = (path, figures)
        return self.made[name]


FIXTURES = Fixtures()


def evict(path: Path) -> None:
    """Drop the files' pages from the page cache, so that the next open reads them cold."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


_LOW_BIT = bytes(i & 1 for i in range(256))  # mincore: bit 0 of each byte, the others reserved


def cached_bytes(path: Path) -> int:
    """How much of the files is in the page cache (`mincore`); after `evict`, what was read."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long,
    )  # fmt: skip
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    page = mmap.PAGESIZE
    total = 0
    for file in sorted(path.iterdir()) if path.is_dir() else [path]:
        size = file.stat().st_size
        if not size:
            continue
        fd = os.open(file, os.O_RDONLY)
        try:
            address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if address in (None, ctypes.c_void_p(-1).value):
                raise BenchmarkError(f"mmap of {file} failed: {os.strerror(ctypes.get_errno())}")
            try:
                resident = (ctypes.c_ubyte * ((size + page - 1) // page))()
                if libc.mincore(ctypes.c_void_p(address), size, resident) != 0:
                    raise BenchmarkError(f"mincore failed: {os.strerror(ctypes.get_errno())}")
                total += bytes(resident).translate(_LOW_BIT).count(1) * page
            finally:
                libc.munmap(ctypes.c_void_p(address), size)
        finally:
            os.close(fd)
    return total


def describe_sizes(sizes: dict[str, Any]) -> str:
    """`291 tensors, 6.74B parameters, 12.55 GiB (68 KiB on disk)`."""
    return (
        f"{sizes['tensors']} tensors, {sizes['params'] / 1e9:.2f}B parameters, "
        f"{sizes['logical_bytes'] / GIB:.2f} GiB ({sizes['disk_bytes'] / 1024:,.0f} KiB on disk)"
    )


def run_worker(
    args: list[str], timeout: float, module: str = "benchmarks.checkpoint_worker"
) -> dict[str, Any]:
    """Run a worker module (`benchmarks.checkpoint_worker`) in a fresh process; its JSON line."""
    argv = [sys.executable, "-m", module, *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(
            f"`{' '.join(argv)}` did not finish within {timeout:g} s "
            "(the limit per run; --timeout changes it)"
        ) from exc
    if done.returncode != 0:
        raise BenchmarkError(f"`{' '.join(argv)}` failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def with_sizes(result: Result, fixture: str) -> Result:
    """The checkpoint's sizes in the description and, as one-sample series, in the samples."""
    made = FIXTURES.made.get(FILE_NAMES[fixture])
    if made is not None:
        _, sizes = made
        result.description += f"; checkpoint: {describe_sizes(sizes)}"
        result.samples["checkpoint.logical_mib"] = [sizes["logical_bytes"] / MIB]
        result.samples["checkpoint.disk_mib"] = [sizes["disk_bytes"] / MIB]
        result.samples["checkpoint.write_seconds"] = [sizes["write_seconds"]]
    return result


def skip_without_pt(ctx: Context, name: str, description: str) -> Result | None:
    """The figure's result when the 3 GiB `.pt` cannot be had (skipped, or failed to write)."""
    try:
        FIXTURES.pt(ctx)
    except Skipped as exc:
        progress(f"[{name}] {exc}")
        return Result(name, f"{description} ({exc})")
    except BenchmarkError as exc:
        return Result(name, description, error=str(exc))
    return None


FigureBody = Callable[[Context, str, str], Result]


def pt_figure(name: str, description: str) -> Callable[[FigureBody], FigureBody]:
    """Register a full-run figure of the 3 GiB `.pt`, `body(ctx, name, description)`: skipped,
    with the reason, when the checkpoint cannot be had; the checkpoint's sizes added."""

    def register(body: FigureBody) -> FigureBody:
        def run(ctx: Context) -> Result:
            skipped = skip_without_pt(ctx, name, description)
            if skipped is not None:
                return skipped
            return with_sizes(body(ctx, name, description), "pt")

        run.__doc__ = body.__doc__
        run.__module__ = body.__module__  # the table lists figures by module
        figure(name, quick=False)(run)
        return body

    return register
