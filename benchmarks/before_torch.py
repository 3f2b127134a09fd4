"""The tree before torch: a weight file's tree on screen, and the memory held, before torch loads.

The app reads a weight file's keys without torch (`core.structure`) and shows their tree while
torch is imported in the background. Two sample sets measure that:

- `tree-before-torch`: `modelbrowse CHECKPOINT --keys-only` in tmux, cold (the same samplers as
  `benchmarks/screens.py`, in a set of their own so that `--only` runs just these), until the
  tree line shows, against the import floor (`import torch, torchvision, textual.app`) timed
  in the same rounds;
- `peak-until-values`: a fresh process that loads what the app has loaded when its load worker
  starts (`textual.app`, the app's modules) and reads the keys' tree
  (`benchmarks.checkpoint_worker structure`): its maximum RSS is what the app holds until a
  tensor's values are needed (torch, imported later, is not counted), in MiB.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks import (
    BenchmarkError,
    Context,
    Result,
    Sampler,
    SampleSet,
    Target,
    figure,
    ratio_result,
)
from benchmarks.fixtures import FIXTURES, MIB, Skipped, evict, pt_figure, run_worker, with_sizes
from benchmarks.screens import (
    FLOOR_NAME,
    LLAMA_7B_MARKS,
    PT_MARKS,
    checkpoint_sampler,
    full_only,
)
from benchmarks.terminal import IMPORT_FLOOR, floor_sampler

TREE_RATIO = 0.15
PEAK_LIMIT_MIB = 150.0


@dataclass(frozen=True)
class MiBTarget(Target):
    """A pass condition in MiB: `value <= limit`, whatever the baseline."""

    kind: str = "mib"

    def check(self, value: float, ratio: float | None) -> bool:
        return value <= self.limit

    def describe(self) -> str:
        return f"<= {self.limit:.0f} MiB"


TREE = SampleSet(
    "tree-before-torch",
    samplers=(
        checkpoint_sampler("llama_7b", "llama", LLAMA_7B_MARKS),
        full_only(checkpoint_sampler("pt_3gib", "pt", PT_MARKS)),
        floor_sampler("import_floor", IMPORT_FLOOR),
    ),
    runs=5,
    quick_runs=1,
    independent=True,
)


def structure_sampler(prefix: str, fixture: str) -> Sampler:
    """`checkpoint_worker structure PATH`, cold: `PREFIX` seconds, `PREFIX.peak_mib`,
    `PREFIX.import_mib` (after the app's imports)."""

    def measure(ctx: Context) -> dict[str, float]:
        try:
            path, _ = getattr(FIXTURES, fixture)(ctx)
        except Skipped:
            return {}
        evict(path)
        figures = run_worker(["structure", str(path)], ctx.timeout)
        return {
            prefix: figures["seconds"],
            f"{prefix}.peak_mib": figures["peak_rss"] / MIB,
            f"{prefix}.import_mib": figures["import_rss"] / MIB,
        }

    return Sampler(prefix, measure)


PEAK = SampleSet(
    "peak-until-values",
    samplers=(
        structure_sampler("llama_7b", "llama"),
        full_only(structure_sampler("pt_3gib", "pt")),
    ),
    runs=3,
    quick_runs=1,
    independent=True,
)


def _tree_figure(ctx: Context, prefix: str, name: str, description: str) -> Result:
    return ratio_result(
        ctx,
        TREE,
        name=name,
        description=description,
        value_key=f"{prefix}.tree",
        baseline_key="import_floor",
        baseline_name=FLOOR_NAME,
        target=Target(TREE_RATIO),
    )


def _peak_figure(ctx: Context, prefix: str, name: str, description: str) -> Result:
    result = Result(
        name,
        description,
        baseline_name="the same process after the app's imports, before reading (MiB)",
        target=MiBTarget(PEAK_LIMIT_MIB),
        unit="MiB",
    )
    try:
        samples = ctx.samples(PEAK)
    except BenchmarkError as exc:
        result.error = str(exc)
        return result
    peaks = samples.get(f"{prefix}.peak_mib")
    if not peaks:
        result.error = ctx.failure(PEAK, prefix) or "no samples"
        return result
    imports = samples[f"{prefix}.import_mib"]
    result.value = max(peaks)
    result.baseline = max(imports)
    result.runs = len(peaks)
    result.samples = {f"{prefix}.peak_mib": peaks, f"{prefix}.import_mib": imports}
    return result


@figure("checkpoint_7b_tree_before_torch")
def llama_tree(ctx: Context) -> Result:
    """`modelbrowse llama-7b/` in tmux until the tree shows, against the import floor."""
    description = (
        "`modelbrowse llama-7b/ --keys-only` (sparse safetensors folder, cold) in tmux until the "
        "`model  Group  6.6B` tree line shows (read without torch) / the import floor"
    )
    return with_sizes(
        _tree_figure(ctx, "llama_7b", "checkpoint_7b_tree_before_torch", description), "llama"
    )


@pt_figure(
    "checkpoint_3gib_pt_tree_before_torch",
    "`modelbrowse state-3gib.pt` (cold) in tmux until the `blocks  Group  805.3M` tree line "
    "shows (read without torch) / the import floor",
)
def pt_tree(ctx: Context, name: str, description: str) -> Result:
    """`modelbrowse state.pt` in tmux until the tree shows, against the import floor."""
    return _tree_figure(ctx, "pt_3gib", name, description)


@figure("checkpoint_7b_peak_until_values_mib")
def llama_peak(ctx: Context) -> Result:
    """Maximum RSS until a tensor's values are needed, for the 7B folder."""
    description = (
        "llama-7b/: maximum RSS of a process with the app's start-up imports that reads the "
        "keys' tree without torch (worst run): what the app holds until values are needed"
    )
    return with_sizes(
        _peak_figure(ctx, "llama_7b", "checkpoint_7b_peak_until_values_mib", description), "llama"
    )


@pt_figure(
    "checkpoint_3gib_pt_peak_until_values_mib",
    "state-3gib.pt: maximum RSS of a process with the app's start-up imports that reads the "
    "keys' tree without torch (worst run): what the app holds until values are needed",
)
def pt_peak(ctx: Context, name: str, description: str) -> Result:
    """Maximum RSS until a tensor's values are needed, for the 3 GiB `.pt`."""
    return _peak_figure(ctx, "pt_3gib", name, description)
