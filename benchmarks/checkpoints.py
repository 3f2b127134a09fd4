"""Checkpoints: opening a 7-billion-parameter safetensors folder and a 3 GiB `.pt` state_dict.

The checkpoints are generated once per run (`benchmarks/fixtures.py`) and dropped from the page
cache before every sample, so each open starts cold, as for a checkpoint not read recently:
whatever the open reads shows up in its time. Each sample is a fresh process
(`benchmarks.checkpoint_worker`): the app's steps before its first screen
(`AppOptions(...).resolve()`, `build_structure()`, `NodeIndex`) against a worker doing the least a
reader must (every safetensors header; a memory-mapped `torch.load`). Peak memory is the maximum
RSS (`ru_maxrss`), which counts memory-mapped file pages that were touched as well as
allocations, against the same figure after the worker's imports. What an open read is the part of
the checkpoint in the page cache after it (`mincore`, readahead included), against what the
floor's reader leaves there. The app in tmux until the tree shows is in `benchmarks/screens.py`.
"""

from __future__ import annotations

from benchmarks import (
    BenchmarkError,
    Context,
    HeadroomTarget,
    Result,
    Sampler,
    SampleSet,
    Target,
    extra_series,
    figure,
    median,
    memory_result,
    ratio_result,
)
from benchmarks.fixtures import (
    FIXTURES,
    MIB,
    cached_bytes,
    evict,
    pt_figure,
    run_worker,
    with_sizes,
)

# What an open may read beyond the floor's reads: a few stray page faults at a large readahead
# (8 MiB on some virtual disks), far less than touching every tensor once (291 faults of at least
# 128 KiB, the usual readahead, for the 7B checkpoint).
READ_HEADROOM_MIB = 32.0
WORKER_IMPORT_FLOOR = "import torch, safetensors"
STEPS = ("app.resolve", "app.build", "app.index", "app.first_open")


def worker_sampler(key: str, mode: str, fixture: str) -> Sampler:
    """One cold measurement by the worker; keys `KEY`, `KEY.peak_mib`, `KEY.import_mib`, ..."""

    def measure(ctx: Context) -> dict[str, float]:
        path, _ = getattr(FIXTURES, fixture)(ctx)
        evict(path)
        figures = run_worker([mode, str(path)], ctx.timeout)
        samples = {
            key: figures["seconds"],
            f"{key}.peak_mib": figures["peak_rss"] / MIB,
            f"{key}.import_mib": figures["import_rss"] / MIB,
            f"{key}.read_mib": cached_bytes(path) / MIB,
        }
        for step in ("resolve", "build", "index", "first_open"):
            if step in figures:
                samples[f"{key}.{step}"] = figures[step]
        return samples

    return Sampler(key, measure)


LLAMA_OPEN = SampleSet(
    "checkpoint-7b-open",
    samplers=(
        worker_sampler("app", "open", "llama"),
        worker_sampler("headers", "headers", "llama"),
    ),
    runs=5,
    quick_runs=1,
)
PT_OPEN = SampleSet(
    "checkpoint-3gib-pt-open",
    samplers=(
        worker_sampler("app", "open", "pt"),
        worker_sampler("torch_load", "torch-load", "pt"),
    ),
    runs=5,
    quick_runs=3,
)


# --- figures -------------------------------------------------------------------------------


@figure("checkpoint_7b_open")
def llama_open(ctx: Context) -> Result:
    """The app's open of the 7B folder, against reading every shard's header."""
    result = ratio_result(
        ctx,
        LLAMA_OPEN,
        name="checkpoint_7b_open",
        description="Llama-7B-shaped safetensors folder (2 shards + index), cold: the app's open "
        "before its first screen (resolve, build_structure, NodeIndex; modules already "
        "imported) / reading every shard's header",
        value_key="app",
        baseline_key="headers",
        baseline_name="safe_open + keys() + get_slice(key).get_shape() for every shard",
        target=Target(1.0, kind="value"),
    )
    return with_sizes(extra_series(result, ctx, LLAMA_OPEN, *STEPS), "llama")


@figure("checkpoint_7b_peak_mib")
def llama_peak(ctx: Context) -> Result:
    """The open's maximum RSS, against a process that imported torch and safetensors."""
    result = memory_result(
        ctx,
        LLAMA_OPEN,
        name="checkpoint_7b_peak_mib",
        description="Llama-7B-shaped safetensors folder: maximum RSS of the process after the "
        "app's open (worst run) / maximum RSS after `import torch, safetensors`",
        value_key="app.peak_mib",
        baseline_key="headers.import_mib",
        baseline_name=f"`{WORKER_IMPORT_FLOOR}` (maximum RSS)",
        target=HeadroomTarget(1024.0),
    )
    return with_sizes(result, "llama")


@figure("checkpoint_7b_read_mib")
def llama_read(ctx: Context) -> Result:
    """What the open brought into the page cache, against the header read's."""
    result = memory_result(
        ctx,
        LLAMA_OPEN,
        name="checkpoint_7b_read_mib",
        description="Llama-7B-shaped safetensors folder, cold: MiB of the checkpoint in the page "
        "cache after the app's open (mincore; readahead included; worst run) / after reading "
        "every shard's header",
        value_key="app.read_mib",
        baseline_key="headers.read_mib",
        baseline_name="safe_open + keys() + get_slice(key).get_shape() for every shard",
        target=HeadroomTarget(READ_HEADROOM_MIB),
    )
    return with_sizes(result, "llama")


@pt_figure(
    "checkpoint_3gib_pt_open",
    "3 GiB .pt state_dict, cold: the app's open before its first screen (modules already "
    "imported) / torch.load(mmap=True, weights_only=True)",
)
def pt_open(ctx: Context, name: str, description: str) -> Result:
    """The app's open of the 3 GiB `.pt`, against a memory-mapped torch.load."""
    result = ratio_result(
        ctx,
        PT_OPEN,
        name=name,
        description=description,
        value_key="app",
        baseline_key="torch_load",
        baseline_name="torch.load(path, mmap=True, weights_only=True)",
        target=Target(1.5),
    )
    return extra_series(result, ctx, PT_OPEN, *STEPS)


@pt_figure(
    "checkpoint_3gib_pt_peak_mib",
    "3 GiB .pt state_dict: maximum RSS of the process after the app's open (worst run) / "
    "the file's size",
)
def pt_peak(ctx: Context, name: str, description: str) -> Result:
    """The open's maximum RSS, against the file's size."""
    result = Result(
        name,
        description,
        baseline_name="the file's size (MiB)",
        target=Target(0.5),
        unit="MiB",
    )
    try:
        samples = ctx.samples(PT_OPEN)
    except BenchmarkError as exc:
        result.error = str(exc)
        return result
    _, sizes = FIXTURES.pt(ctx)
    peaks = samples["app.peak_mib"]
    floor = median(samples["torch_load.import_mib"])
    result.value = max(peaks)
    result.baseline = sizes["logical_bytes"] / MIB
    result.runs = len(peaks)
    result.samples = {
        "app.peak_mib": peaks,
        "torch_load.import_mib": samples["torch_load.import_mib"],
    }
    result.description += f" (the import floor `{WORKER_IMPORT_FLOOR}` is {floor:.0f} MiB)"
    return result


@pt_figure(
    "checkpoint_3gib_pt_read_mib",
    "3 GiB .pt state_dict, cold: MiB of the file in the page cache after the app's open "
    "(mincore; readahead included; worst run) / after a memory-mapped torch.load",
)
def pt_read(ctx: Context, name: str, description: str) -> Result:
    """What the open brought into the page cache, against torch.load's."""
    return memory_result(
        ctx,
        PT_OPEN,
        name=name,
        description=description,
        value_key="app.read_mib",
        baseline_key="torch_load.read_mib",
        baseline_name="torch.load(path, mmap=True, weights_only=True)",
        target=HeadroomTarget(READ_HEADROOM_MIB),
    )
