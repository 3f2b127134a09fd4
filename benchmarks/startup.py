"""Start-up figures: `--help`, and `modelbrowse alexnet` in a real terminal (tmux).

How the app is timed in tmux is in `benchmarks/terminal.py`; alexnet's runs are in the first
screens' sample set (`benchmarks/screens.py`), which times the import floor once for all.
"""

from __future__ import annotations

from benchmarks import (
    Context,
    Result,
    SampleSet,
    Target,
    command_sampler,
    extra_series,
    figure,
    python_sampler,
    ratio_result,
)
from benchmarks.screens import SCREENS as ALEXNET
from benchmarks.terminal import (
    COMMAND,
    IMPORT_FLOOR,
    POLL_INTERVAL_S,
    TERMINAL_SIZE,
    TmuxServer,
    check_environment,
    time_marks_in_tmux,
    tmux_sampler,
)

# check_environment is what the harness calls; the rest were defined here before terminal.py.
__all__ = [
    "COMMAND",
    "IMPORT_FLOOR",
    "POLL_INTERVAL_S",
    "TERMINAL_SIZE",
    "TmuxServer",
    "check_environment",
    "time_marks_in_tmux",
    "tmux_sampler",
]

# The goal for the first frame: the header painted this many seconds after the command.
FIRST_FRAME_S = 0.3


# --- sample sets ---------------------------------------------------------------------------

HELP = SampleSet(
    "help",
    samplers=(
        command_sampler("help", (str(COMMAND), "--help")),
        python_sampler("import_argparse", "import argparse"),
    ),
    runs=15,
    quick_runs=5,
    warmup=((str(COMMAND), "--help"),),
)

# --- figures -------------------------------------------------------------------------------


@figure("help")
def help_time(ctx: Context) -> Result:
    """`modelbrowse --help` against the bare interpreter importing argparse."""
    return ratio_result(
        ctx,
        HELP,
        name="help",
        description="`modelbrowse --help` wall time / `python -c 'import argparse'`",
        value_key="help",
        baseline_key="import_argparse",
        baseline_name="python -c 'import argparse'",
        target=Target(2.0),
    )


@figure("alexnet_first_frame")
def first_frame(ctx: Context) -> Result:
    """Header `modelbrowse  alexnet` painted within FIRST_FRAME_S of the command starting (by
    the splash, `tui/splash.py`, before Textual is imported); a Textual app of one line, timed
    the same way, is shown beside it (the ratio): the floor of any frame drawn with Textual."""
    result = ratio_result(
        ctx,
        ALEXNET,
        name="alexnet_first_frame",
        description="`modelbrowse alexnet` in tmux until the header shows (the frame painted "
        "before Textual is imported, which Textual's own identical frame then replaces), in "
        f"seconds from the command's start: the goal is {FIRST_FRAME_S:g} s; the ratio is "
        "against a Textual app that paints one line (`benchmarks/textual_frame.py`), timed "
        "the same way: the least any frame drawn with Textual takes here",
        value_key="alexnet.frame",
        baseline_key="textual_frame.frame",
        baseline_name="benchmarks/textual_frame.py in tmux until its line shows",
        target=Target(FIRST_FRAME_S, kind="value"),
    )
    return extra_series(result, ctx, ALEXNET, "import_textual")


@figure("alexnet_tree_shown")
def tree_vs_import_floor(ctx: Context) -> Result:
    """The tree shows `features  Sequential  2.5M`, against importing torch and textual."""
    return ratio_result(
        ctx,
        ALEXNET,
        name="alexnet_tree_shown",
        description="`modelbrowse alexnet` in tmux until the `features` tree line shows / "
        "the import floor",
        value_key="alexnet.tree",
        baseline_key="import_floor",
        baseline_name=f"python -c '{IMPORT_FLOOR}'",
        target=Target(1.1),
    )


@figure("alexnet_random_init", quick=False)
def random_init(ctx: Context) -> Result:
    """`[random init]` in the header (real tensors ready), against the import floor."""
    return ratio_result(
        ctx,
        ALEXNET,
        name="alexnet_random_init",
        description="`modelbrowse alexnet` in tmux until `[random init]` shows (real tensors: "
        "alexnet built and initialised in a worker after the first screen) / the import floor",
        value_key="alexnet.random_init",
        baseline_key="import_floor",
        baseline_name=f"python -c '{IMPORT_FLOOR}'",
    )
