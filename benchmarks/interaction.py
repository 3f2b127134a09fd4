"""Large-model and interaction figures: a 100,000-module model, keys, edits, tensor statistics.

- The synthetic model (`benchmarks/synthetic_model.py:Synthetic100k`, 100,002 modules) opened in
  tmux until its `layers` line shows, against importing and building it on `meta` in a script.
  Building it takes 20 to 30 s here, so the set runs once (`SYNTHETIC_SCREEN_RUNS`), full run
  only.
- Keys, expands and edits on that model, in `benchmarks.large_model_worker` (one app per fresh
  process, driven by Textual's Pilot; see there for how a key is timed), against the same keys on
  a plain Textual `Tree` with the same lines. One run: the `j` figure is the 95th percentile of
  200 presses within it, each edit figure the median of 5 rounds of the edits within it.
- Statistics of alexnet's largest tensor and holding `j` over big tensors, in
  `benchmarks.stats_worker` (one run: the estimate and the showing of the tensor are medians of
  5 visits within it), against `estimate_stats` / `compute_stats` in a plain script. Those two
  figures alone are in `--quick` (the app run without the exact statistics and the holding, no
  baseline).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
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
    ratio_result,
    run_command,
)
from benchmarks.startup import COMMAND, time_marks_in_tmux

MODEL_FILE = Path(__file__).resolve().with_name("synthetic_model.py")
SYNTHETIC_SOURCE = f"{MODEL_FILE}:Synthetic100k"
# Two, not five: each round builds the model twice (the app and the baseline), 15 s each with
# the imports, and the whole run is to stay within 10 minutes.
SYNTHETIC_SCREEN_RUNS = 2
# Building the synthetic model takes seconds: each run may take this long.
LONG_TIMEOUT_S = 300.0

# The cheapest meta build there is: the app's own (initialisers skipped, collector paused);
# a plain `with torch.device('meta')` takes three times as long.
BUILD_ON_META = (
    "import torch, torchvision, textual.app\n"
    "from modelbrowse.core.sources.meta_build import on_meta\n"
    f"import sys; sys.path.insert(0, {str(MODEL_FILE.parent)!r})\n"
    "from synthetic_model import Synthetic100k\n"
    "with on_meta():\n"
    "    Synthetic100k()\n"
)
SYNTHETIC_MARKS = {"tree": re.compile(r"layers\s+ModuleList\s+5\.9M")}


def _timeout(ctx: Context) -> float:
    return max(ctx.timeout, LONG_TIMEOUT_S)


def run_worker(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """`python -m benchmarks.MODULE ARGS` in a fresh process; its last stdout line as JSON."""
    argv = [sys.executable, "-m", f"benchmarks.{module}", *args, str(timeout)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(
            f"`{' '.join(argv)}` did not finish within {timeout:g} s "
            "(the limit per run; --timeout raises it)"
        ) from exc
    if done.returncode != 0:
        raise BenchmarkError(f"`{' '.join(argv)}` failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def worker_sampler(
    prefix: str, module: str, args: list[str], quick_args: list[str] | None = None, **kw: Any
) -> Sampler:
    """Every number the worker prints, as `prefix.name`; `quick_args` in place of `args` with
    `--quick`."""

    def measure(ctx: Context) -> dict[str, float]:
        chosen = quick_args if ctx.quick and quick_args is not None else args
        figures = run_worker(module, chosen, _timeout(ctx))
        return {f"{prefix}.{name}": float(value) for name, value in figures.items()}

    return Sampler(prefix, measure, **kw)


def _synthetic_screen(ctx: Context) -> dict[str, float]:
    argv = (str(COMMAND), SYNTHETIC_SOURCE)
    seen = time_marks_in_tmux(argv, SYNTHETIC_MARKS, _timeout(ctx))
    return {f"app.{name}": seconds for name, seconds in seen.items()}


def _build_on_meta(ctx: Context) -> dict[str, float]:
    return {"build_meta": run_command((sys.executable, "-c", BUILD_ON_META), _timeout(ctx))}


# --- sample sets ---------------------------------------------------------------------------

SYNTHETIC_SCREEN = SampleSet(
    "synthetic_screen",
    samplers=(Sampler("app", _synthetic_screen), Sampler("build_meta", _build_on_meta)),
    runs=SYNTHETIC_SCREEN_RUNS,
    quick_runs=1,
)

SYNTHETIC_KEYS = SampleSet(
    "synthetic_keys",
    samplers=(
        worker_sampler("app", "large_model_worker", ["app"]),
        worker_sampler("tree", "large_model_worker", ["tree"]),
    ),
    runs=1,
    quick_runs=1,
)

ALEXNET_STATS = SampleSet(
    "alexnet_stats",
    samplers=(
        worker_sampler("app", "stats_worker", ["app"], quick_args=["app", "--no-hold"]),
        worker_sampler("floor", "stats_worker", ["floor"], full_only=True),
    ),
    runs=1,
    quick_runs=1,
)


# --- figures -------------------------------------------------------------------------------


@figure("synthetic_tree_shown", quick=False)
def synthetic_tree_shown(ctx: Context) -> Result:
    """The 100k-module model's first screen, against importing and building it on meta."""
    return ratio_result(
        ctx,
        SYNTHETIC_SCREEN,
        name="synthetic_tree_shown",
        description="`modelbrowse benchmarks/synthetic_model.py:Synthetic100k` (100,002 modules) "
        "in tmux until the `layers` tree line shows / importing torch, torchvision and textual "
        "and building the model on meta in a script, as the app does (initialisers skipped)",
        value_key="app.tree",
        baseline_key="build_meta",
        baseline_name="python -c 'import torch, torchvision, textual.app; "
        "with modelbrowse.core.sources.meta_build.on_meta(): Synthetic100k()'",
        target=Target(1.2),
    )


@figure("synthetic_key_j", quick=False)
def synthetic_key_j(ctx: Context) -> Result:
    """95th percentile of 200 `j` presses on the 100k-module model."""
    return ratio_result(
        ctx,
        SYNTHETIC_KEYS,
        name="synthetic_key_j",
        description="95th percentile of 200 `j` presses, each from the key event until its "
        "messages are handled and the frame rendered, over an expanded region of the 100k-module "
        "model (Pilot, 120x40; one app run)",
        value_key="app.j_p95",
        baseline_key="tree.j_p95",
        baseline_name="the same presses on a plain Textual Tree with the same lines "
        "(no detail pane): the ratio is the app's overhead",
        target=Target(0.016, kind="value"),
    )


@figure("synthetic_expand_collapse", quick=False)
def synthetic_expand_collapse(ctx: Context) -> Result:
    """The slowest expand or collapse (`l`/`h`) of a long line on the 100k-module model."""
    return ratio_result(
        ctx,
        SYNTHETIC_KEYS,
        name="synthetic_expand_collapse",
        description="slowest `l`/`h` on `layers` (200 page lines), `layers[0:100]` (100 blocks) "
        "and a block, first expands included, key event until the frame is rendered "
        "(100k-module model, one app run)",
        value_key="app.expand_max",
        baseline_key="tree.expand_max",
        baseline_name="the same keys on a plain Textual Tree with the same lines",
        target=Target(0.050, kind="value"),
    )


def _edit_figure(
    ctx: Context, name: str, key: str, what: str, baseline: tuple[str, str] | None = None
) -> Result:
    return ratio_result(
        ctx,
        SYNTHETIC_KEYS,
        name=name,
        description=f"{what} on the 100k-module model, from the key until the edit is applied "
        "and the frame rendered (one app run, the median of the edit done 5 times)",
        value_key=key,
        baseline_key=baseline[0] if baseline else None,
        baseline_name=baseline[1] if baseline else "",
        target=Target(0.200, kind="value"),
    )


@figure("synthetic_edit_freeze", quick=False)
def synthetic_edit_freeze(ctx: Context) -> Result:
    floor = ("app.freeze_floor", "`model.requires_grad_(False)` on the same model, same process")
    return _edit_figure(
        ctx, "synthetic_edit_freeze", "app.edit_freeze", "`f` on the root", baseline=floor
    )


@figure("synthetic_edit_replace", quick=False)
def synthetic_edit_replace(ctx: Context) -> Result:
    what = "`enter` in the replace dialog of `layers.0.fc1` holding `nn.Linear(8, 16)`"
    floor = ("app.dialog_cancel", "`escape` in the same dialog: it closes, the screen is redrawn")
    return _edit_figure(ctx, "synthetic_edit_replace", "app.edit_replace", what, baseline=floor)


@figure("synthetic_edit_undo", quick=False)
def synthetic_edit_undo(ctx: Context) -> Result:
    what = "`u`, the slower of undoing the freeze and undoing the replace,"
    return _edit_figure(ctx, "synthetic_edit_undo", "app.edit_undo", what)


@figure("alexnet_stats_estimate")
def alexnet_stats_estimate(ctx: Context) -> Result:
    """What the estimate adds to showing a 37.7M-value tensor, in the app."""
    return ratio_result(
        ctx,
        ALEXNET_STATS,
        name="alexnet_stats_estimate",
        description="`modelbrowse alexnet`, go to classifier.1.weight (37.7M values): from the "
        "start of the app's `estimate_stats` call until the estimated statistics are in the "
        "detail pane, median of 5 visits in one app run (the pane is rendered afterwards, in "
        "the same frame as the tensor's details)",
        value_key="app.estimate",
        baseline_key=None if ctx.quick else "floor.estimate_floor",
        baseline_name=""
        if ctx.quick
        else "estimate_stats on the same shape in a plain script (median of 5 calls)",
        target=Target(0.001, kind="value"),
    )


@figure("alexnet_show_tensor")
def alexnet_show_tensor(ctx: Context) -> Result:
    """The UI-thread work that shows a 37.7M-value tensor with estimated statistics."""
    return ratio_result(
        ctx,
        ALEXNET_STATS,
        name="alexnet_show_tensor",
        description="`modelbrowse alexnet`, classifier.1.weight: from the start of the app's "
        "`_show_detail` call until the tensor's details and estimated statistics are in the "
        "pane (the exact statistics' worker starts after that), median of 5 visits",
        value_key="app.show",
        baseline_key=None,
    )


@figure("alexnet_stats_exact", quick=False)
def alexnet_stats_exact(ctx: Context) -> Result:
    """From showing the tensor until the exact statistics replace the estimate."""
    return ratio_result(
        ctx,
        ALEXNET_STATS,
        name="alexnet_stats_exact",
        description="`modelbrowse alexnet`, classifier.1.weight: from the `_show_detail` call "
        "until the exact statistics (a worker thread) reach the detail pane",
        value_key="app.exact",
        baseline_key="floor.exact_floor",
        baseline_name="compute_stats on the same shape in a plain script",
    )


@figure("alexnet_hold_j", quick=False)
def alexnet_hold_j(ctx: Context) -> Result:
    """The slowest of 52 `j` presses over classifier's lines while exact statistics run."""
    return ratio_result(
        ctx,
        ALEXNET_STATS,
        name="alexnet_hold_j",
        description="`modelbrowse alexnet`, `j` held (a press every 33 ms at most) from "
        "`classifier` to its last line, 4 times (52 presses; three Linear weights of 4.1M to "
        "37.7M values start exact statistics in workers): the slowest press, key event until "
        "the frame is rendered",
        value_key="app.hold_max",
        baseline_key=None,
        target=Target(0.050, kind="value"),
    )
