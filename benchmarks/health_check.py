"""The health check: `--check` on a 2 GiB checkpoint against reading the file's bytes once.

The checkpoints (written once per run by `benchmarks.check_worker`, 2 GiB of real float32
data each: eight 8192x8192 matrices and a norm's weight and bias beside each) are a
safetensors file and a `torch.save` state_dict. Each sample is a fresh process: the check
(`check_source(resolve_source(PATH))`, after its imports and a tiny check of the same kind, so
that lazy imports are not timed) against a process that reads the file front to back once,
16 MiB at a time, after the same imports. Figures:

- `check_2gib_safetensors` and `check_2gib_pt`: cold, the file's pages dropped from the page
  cache before every sample of either arm (`posix_fadvise(DONTNEED)`), as for a checkpoint
  just copied or downloaded: the check at disk read speed; target 1.5x the read;
- `check_2gib_safetensors_warm`: the same with the file in the page cache for both arms (one
  untimed read first), for information: what the check's own work costs beside a copy out of
  memory.

Both checkpoints need 4 GiB of disk under `$TMPDIR` (skipped below 8 GiB free) and take
about a minute each to write on a slow disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from benchmarks import (
    BenchmarkError,
    Context,
    Result,
    Sampler,
    SampleSet,
    Target,
    figure,
    progress,
    ratio_result,
)
from benchmarks.fixtures import FIXTURES, GIB, MIB, evict, run_worker

MIN_FREE_BYTES = 8 << 30
TARGET_RATIO = 1.5
NAMES = {"safetensors": "check-2gib.safetensors", "pt": "check-2gib.pt"}
_made: dict[str, tuple[Path, dict[str, Any]]] = {}


class Skipped(BenchmarkError):
    """Not enough disk for the checkpoint."""


def checkpoint(kind: str, ctx: Context) -> tuple[Path, dict[str, Any]]:
    """The 2 GiB checkpoint of this kind and its sizes, written on first use."""
    if kind not in _made:
        root = FIXTURES.root
        free = shutil.disk_usage(root).free
        if free < MIN_FREE_BYTES:
            raise Skipped(
                f"skipped: the 2 GiB checkpoint needs {MIN_FREE_BYTES / GIB:.0f} GiB free in "
                f"{root.parent} (set TMPDIR elsewhere), {free / GIB:.1f} GiB is"
            )
        path = root / NAMES[kind]
        progress(f"[health-check] writing {path}")
        sizes = run_worker_of(["write-" + kind, str(path)], ctx.timeout * 10)
        _made[kind] = (path, sizes)
    return _made[kind]


def run_worker_of(args: list[str], timeout: float) -> dict[str, Any]:
    return run_worker(args, timeout, module="benchmarks.check_worker")


def sampler(key: str, mode: str, kind: str, *, cold: bool) -> Sampler:
    """One pass by the worker over the checkpoint, cold (evicted first) or warm."""

    def measure(ctx: Context) -> dict[str, float]:
        path, _ = checkpoint(kind, ctx)
        if cold:
            evict(path)
        figures = run_worker_of([mode, str(path)], ctx.timeout * 5)
        return {key: figures["seconds"]}

    return Sampler(key, measure)


def warm_up(kind: str) -> Sampler:
    """An untimed read that brings the file into the page cache before the warm rounds."""

    def measure(ctx: Context) -> dict[str, float]:
        path, _ = checkpoint(kind, ctx)
        run_worker_of(["read", str(path)], ctx.timeout * 5)
        return {}

    return Sampler("warm_up", measure)


def cold_set(kind: str) -> SampleSet:
    return SampleSet(
        f"check-2gib-{kind}",
        samplers=(
            sampler("check", "check", kind, cold=True),
            sampler("read", "read", kind, cold=True),
        ),
        runs=3,
        quick_runs=1,
    )


SAFETENSORS_COLD = cold_set("safetensors")
PT_COLD = cold_set("pt")
SAFETENSORS_WARM = SampleSet(
    "check-2gib-safetensors-warm",
    samplers=(
        warm_up("safetensors"),
        sampler("check", "check", "safetensors", cold=False),
        sampler("read", "read", "safetensors", cold=False),
    ),
    runs=3,
    quick_runs=1,
)


def _result(ctx: Context, sample_set: SampleSet, name: str, kind: str, how: str) -> Result:
    try:
        checkpoint(kind, ctx)
    except Skipped as exc:
        progress(f"[{name}] {exc}")
        return Result(name, f"--check on a 2 GiB {kind} checkpoint ({exc})")
    except BenchmarkError as exc:
        return Result(name, f"--check on a 2 GiB {kind} checkpoint", error=str(exc))
    _, sizes = _made[kind]
    informational = "warm" in sample_set.name
    result = ratio_result(
        ctx,
        sample_set,
        name=name,
        description=f"--check on a {kind} checkpoint of {sizes['tensors']} tensors, "
        f"{sizes['logical_bytes'] / GIB:.2f} GiB of float32, {how}: check_source(resolve_source"
        "(PATH)) in a fresh process after its imports / reading the file's bytes once",
        value_key="check",
        baseline_key="read",
        baseline_name="the file read front to back once, 16 MiB at a time (readinto)",
        target=Target(TARGET_RATIO, informational=informational),
    )
    result.samples["checkpoint.logical_mib"] = [sizes["logical_bytes"] / MIB]
    return result


@figure("check_2gib_safetensors", quick=False)
def check_safetensors(ctx: Context) -> Result:
    """The check of the 2 GiB safetensors file, cold, against reading it once."""
    return _result(ctx, SAFETENSORS_COLD, "check_2gib_safetensors", "safetensors", "cold")


@figure("check_2gib_safetensors_warm", quick=False)
def check_safetensors_warm(ctx: Context) -> Result:
    """The same in the page cache, for information."""
    return _result(
        ctx, SAFETENSORS_WARM, "check_2gib_safetensors_warm", "safetensors", "in the page cache"
    )


@figure("check_2gib_pt", quick=False)
def check_pt(ctx: Context) -> Result:
    """The check of the 2 GiB `.pt` state_dict, cold, against reading it once."""
    return _result(ctx, PT_COLD, "check_2gib_pt", "pt", "cold")
