"""First screens of large models and checkpoints, in tmux, against the import floor (full run).

One sample set holds every app run here and the floors, interleaved round by round, so that the
floor (`import torch, torchvision, textual.app`, seconds on a small machine) is timed once per
round for all of them (`benchmarks/terminal.py` says how the app is timed):

- `alexnet` until the header, the tree and `[random init]` show (the figures are in
  `benchmarks/startup.py`; with `--quick`, only its samplers run, once), beside
  `benchmarks/textual_frame.py` (a Textual app of one line) until the header's words show;
- `resnet50`, `vit_b_16` and `vit_h_14` (632M parameters: the app builds it on `meta` and defers
  the real initialisation) until the first top-level module's tree line, with its parameter
  count, and the root's count show;
- a Llama-70B-shaped architecture (`benchmarks/llama70b.py`, plain `torch.nn`) with `--meta`,
  the same, and the app's peak RSS (`VmHWM`) SETTLE_S after, against the floor's maximum RSS;
- the generated checkpoints (`benchmarks/fixtures.py`: the Llama-7B-shaped safetensors folder
  and the 3 GiB `.pt`), cold, opened with `--keys-only` (the keys' tree, whatever is installed),
  until the tree shows, with the app's peak RSS then and what it read (`mincore`).

A sampler that fails is left out of the rounds that remain; the others go on.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from benchmarks import (
    Context,
    HeadroomTarget,
    Result,
    Sampler,
    SampleSet,
    Target,
    extra_series,
    figure,
    memory_result,
    python_sampler,
    ratio_result,
)
from benchmarks.fixtures import FIXTURES, MIB, Skipped, cached_bytes, evict, pt_figure, with_sizes
from benchmarks.terminal import COMMAND, IMPORT_FLOOR, floor_sampler, tmux_sampler, watch_in_tmux

# Seconds the app may go on after the tree shows before its peak memory is read: the work that
# starts with the first screen (the edit history, the shape check) is counted too.
SETTLE_S = 1.0
FLOOR_NAME = f"python -c '{IMPORT_FLOOR}'"
MEMORY_HEADROOM_MIB = 1024.0

LLAMA_7B_MARKS = {
    "frame": re.compile(r"modelbrowse\s+\S*llama-7b"),
    "tree": re.compile(r"model\s+Group\s+6\.6B"),
}
PT_MARKS = {
    "frame": re.compile(r"modelbrowse\s+\S*state-3gib\.pt"),
    "tree": re.compile(r"blocks\s+Group\s+805\.3M"),
}
# torchvision models: the first top-level module's tree line with its count, and the root's
# count (in the header and on the tree's root line, which show together), as `--print` has them.
MODELS = {
    "resnet50": ("conv1  Conv2d  9.4K", "ResNet  25.6M"),
    "vit_b_16": ("conv_proj  Conv2d  590.6K", "VisionTransformer  86.6M"),
    "vit_h_14": ("conv_proj  Conv2d  753.9K", "VisionTransformer  632.0M"),
}
LLAMA_70B = f"{Path(__file__).resolve().parent / 'llama70b.py'}:Llama70B"
TEXTUAL_FRAME = Path(__file__).resolve().parent / "textual_frame.py"
LLAMA_70B_MARKS = {
    "frame": re.compile(r"modelbrowse\s+\S*llama70b\.py:Llama70B"),
    "tree": re.compile(r"model\s+LlamaModel\s+68\.7B"),
    "root": re.compile(r"Llama70B\s+69\.0B"),
}


def loose(text: str) -> re.Pattern[str]:
    """The words of `text` with any run of whitespace between them."""
    return re.compile(r"\s+".join(re.escape(word) for word in text.split()))


def model_sampler(name: str) -> Sampler:
    """`modelbrowse NAME` until the tree line and the root's count show (`NAME.shown`)."""
    tree, root = MODELS[name]
    marks = {"frame": loose(f"modelbrowse {name}"), "tree": loose(tree), "root": loose(root)}
    return tmux_sampler(name, (str(COMMAND), name), marks, shown=("tree", "root"))


def checkpoint_sampler(prefix: str, fixture: str, marks: dict[str, re.Pattern[str]]) -> Sampler:
    """`modelbrowse CHECKPOINT --keys-only` in tmux, cold: seconds until each mark shows
    (`PREFIX.MARK`), the app's VmHWM SETTLE_S after (`PREFIX.peak_mib`), and the MiB of the
    checkpoint in the page cache then (`PREFIX.read_mib`); nothing when the fixture is skipped."""

    def measure(ctx: Context) -> dict[str, float]:
        try:
            path, _ = getattr(FIXTURES, fixture)(ctx)
        except Skipped:
            return {}
        evict(path)
        argv = (str(COMMAND), str(path), "--keys-only")
        seen, peak = watch_in_tmux(argv, marks, ctx.timeout, settle=SETTLE_S)
        samples = {f"{prefix}.{name}": seconds for name, seconds in seen.items()}
        samples[f"{prefix}.peak_mib"] = (peak or 0) / MIB
        samples[f"{prefix}.read_mib"] = cached_bytes(path) / MIB
        return samples

    return Sampler(prefix, measure)


# What each alexnet mark looks like on the screen (whitespace runs are matched loosely).
ALEXNET_MARKS = {
    "frame": re.compile(r"modelbrowse\s+alexnet"),
    "tree": re.compile(r"features\s+Sequential\s+2\.5M"),
    "random_init": re.compile(r"\[random init\]"),
}


def full_only(sampler: Sampler) -> Sampler:
    return dataclasses.replace(sampler, full_only=True)


SCREENS = SampleSet(
    "first-screens",
    samplers=(
        tmux_sampler(
            "alexnet",
            (str(COMMAND), "alexnet"),
            ALEXNET_MARKS,
            full_only_marks=("random_init",),
        ),
        python_sampler("import_textual", "import textual.app"),
        tmux_sampler(
            "textual_frame",
            (sys.executable, str(TEXTUAL_FRAME)),
            {"frame": ALEXNET_MARKS["frame"]},
        ),
        *(full_only(model_sampler(name)) for name in MODELS),
        full_only(
            tmux_sampler(
                "llama_70b",
                (str(COMMAND), LLAMA_70B, "--meta"),
                LLAMA_70B_MARKS,
                shown=("tree", "root"),
                settle=SETTLE_S,
            )
        ),
        full_only(checkpoint_sampler("llama_7b", "llama", LLAMA_7B_MARKS)),
        full_only(checkpoint_sampler("pt_3gib", "pt", PT_MARKS)),
        floor_sampler("import_floor", IMPORT_FLOOR),
    ),
    runs=5,
    quick_runs=1,
    warmup=((sys.executable, "-c", IMPORT_FLOOR),),
    independent=True,
)


# --- torchvision models and the 70B architecture ------------------------------------------


def _model_figure(name: str) -> None:
    first_line, _ = MODELS[name]

    def run(ctx: Context) -> Result:
        return ratio_result(
            ctx,
            SCREENS,
            name=f"{name}_tree_shown",
            description=f"`modelbrowse {name}` in tmux until the `{first_line}` tree line and "
            "the root's parameter count show / the import floor",
            value_key=f"{name}.shown",
            baseline_key="import_floor",
            baseline_name=FLOOR_NAME,
            target=Target(1.1),
        )

    run.__doc__ = f"`modelbrowse {name}` until its tree shows, against the import floor."
    figure(f"{name}_tree_shown", quick=False)(run)


for _name in MODELS:
    _model_figure(_name)


@figure("llama_70b_meta_first_screen", quick=False)
def llama_70b_first_screen(ctx: Context) -> Result:
    """The 70B architecture with `--meta` until its tree shows, against the import floor."""
    return ratio_result(
        ctx,
        SCREENS,
        name="llama_70b_meta_first_screen",
        description="`modelbrowse benchmarks/llama70b.py:Llama70B --meta` (69.0B parameters, "
        "80 layers, plain torch.nn) in tmux until the `model  LlamaModel  68.7B` tree line and "
        "the root's count show / the import floor",
        value_key="llama_70b.shown",
        baseline_key="import_floor",
        baseline_name=FLOOR_NAME,
        target=Target(1.5),
    )


@figure("llama_70b_meta_peak_mib", quick=False)
def llama_70b_peak(ctx: Context) -> Result:
    """The app's peak RSS with the 70B architecture on `meta`, against the import floor's."""
    return memory_result(
        ctx,
        SCREENS,
        name="llama_70b_meta_peak_mib",
        description="`modelbrowse benchmarks/llama70b.py:Llama70B --meta` in tmux: the app's "
        f"VmHWM {SETTLE_S:g} s after the tree shows (worst run) / the import floor's maximum RSS",
        value_key="llama_70b.peak_mib",
        baseline_key="import_floor.peak_mib",
        baseline_name=f"{FLOOR_NAME} (maximum RSS)",
        target=HeadroomTarget(MEMORY_HEADROOM_MIB),
    )


# --- the generated checkpoints -------------------------------------------------------------


def _first_screen(ctx: Context, prefix: str, name: str, description: str) -> Result:
    return ratio_result(
        ctx,
        SCREENS,
        name=name,
        description=description,
        value_key=f"{prefix}.tree",
        baseline_key="import_floor",
        baseline_name=FLOOR_NAME,
        target=Target(1.5),
    )


def _app_peak(ctx: Context, prefix: str, name: str, description: str) -> Result:
    result = memory_result(
        ctx,
        SCREENS,
        name=name,
        description=description,
        value_key=f"{prefix}.peak_mib",
        baseline_key="import_floor.peak_mib",
        baseline_name=f"{FLOOR_NAME} (maximum RSS)",
        target=HeadroomTarget(MEMORY_HEADROOM_MIB),
    )
    return extra_series(result, ctx, SCREENS, f"{prefix}.read_mib")


def _peak_text(command: str, prefix: str) -> str:
    return (
        f"`{command}` in tmux: the app's VmHWM {SETTLE_S:g} s after the tree shows (worst run) "
        f"/ the import floor's maximum RSS; {prefix}.read_mib: MiB of the checkpoint in the "
        "page cache then"
    )


@figure("checkpoint_7b_first_screen", quick=False)
def llama_7b_first_screen(ctx: Context) -> Result:
    """`modelbrowse FOLDER` in tmux until the tree shows, against the import floor."""
    description = (
        "`modelbrowse llama-7b/` (sparse safetensors folder, cold) in tmux until the "
        "`model  Group  6.6B` tree line shows / the import floor"
    )
    result = _first_screen(ctx, "llama_7b", "checkpoint_7b_first_screen", description)
    return with_sizes(result, "llama")


@figure("checkpoint_7b_app_peak_mib", quick=False)
def llama_7b_app_peak(ctx: Context) -> Result:
    """The app's peak RSS once the tree shows, against the import floor's."""
    description = _peak_text("modelbrowse llama-7b/", "llama_7b")
    result = _app_peak(ctx, "llama_7b", "checkpoint_7b_app_peak_mib", description)
    return with_sizes(result, "llama")


@pt_figure(
    "checkpoint_3gib_pt_first_screen",
    "`modelbrowse state-3gib.pt` (cold) in tmux until the `blocks  Group  805.3M` tree line "
    "shows / the import floor",
)
def pt_first_screen(ctx: Context, name: str, description: str) -> Result:
    """`modelbrowse state.pt` in tmux until the tree shows, against the import floor."""
    return _first_screen(ctx, "pt_3gib", name, description)


@pt_figure(
    "checkpoint_3gib_pt_app_peak_mib",
    _peak_text("modelbrowse state-3gib.pt", "pt_3gib"),
)
def pt_app_peak(ctx: Context, name: str, description: str) -> Result:
    """The app's peak RSS once the tree of the `.pt` shows, against the import floor's."""
    return _app_peak(ctx, "pt_3gib", name, description)
