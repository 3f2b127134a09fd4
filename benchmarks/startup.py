"""Start-up figures: `--help`, and `modelbrowse alexnet` in a real terminal (tmux).

The app runs in a detached tmux session (120x40, TERM=xterm-256color, its own server socket);
the pane is read with `capture-pane -p` about every 10 ms, and a mark's time is when the capture
that first shows it returned, measured from just before `tmux new-session` (the server is started
beforehand, so its own start-up is not counted). The server is killed after every run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks import (
    BenchmarkError,
    Context,
    EnvironmentProblem,
    Result,
    Sampler,
    SampleSet,
    Target,
    command_sampler,
    figure,
    python_sampler,
    ratio_result,
)

COMMAND = Path(sys.executable).parent / "modelbrowse"
TERMINAL_SIZE = (120, 40)
POLL_INTERVAL_S = 0.010

IMPORT_FLOOR = "import torch, torchvision, textual.app"
IMPORT_AND_BUILD = "import torch, torchvision, textual.app; torchvision.models.alexnet()"

# What each mark looks like on the screen (whitespace runs are matched loosely).
ALEXNET_MARKS = {
    "frame": re.compile(r"modelbrowse\s+alexnet"),
    "tree": re.compile(r"features\s+Sequential\s+2\.5M"),
    "random_init": re.compile(r"\[random init\]"),
}


def check_environment() -> None:
    """Raise EnvironmentProblem when tmux or the console script is missing."""
    if shutil.which("tmux") is None:
        raise EnvironmentProblem(
            "tmux is not installed (or not on PATH); the start-up figures run the app in a real "
            "terminal through tmux: install it (apt-get install tmux) and run again"
        )
    if not COMMAND.exists():
        raise EnvironmentProblem(
            f"the modelbrowse console script is not at {COMMAND}; install the project in this "
            "interpreter's environment (pip install -e .) and run again"
        )


class TmuxServer:
    """A private tmux server (own socket, no config file) holding one placeholder session."""

    def __init__(self, timeout: float) -> None:
        self.socket = f"modelbrowse-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.timeout = timeout
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        self.env["TERM"] = "xterm-256color"

    def tmux(self, *args: str) -> str:
        """Run a tmux command against this server; returns its stdout."""
        try:
            result = subprocess.run(
                ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                capture_output=True,
                text=True,
                env=self.env,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchmarkError(
                f"tmux {args[0]} did not answer within {self.timeout:g} s"
            ) from exc
        if result.returncode != 0:
            raise BenchmarkError(f"tmux {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def start(self) -> None:
        """Start the server with an idle session and the options the app session needs."""
        width, height = TERMINAL_SIZE
        self.tmux(
            "new-session", "-d", "-s", "idle", "-x", str(width), "-y", str(height), "sleep 600"
        )
        self.tmux("set-option", "-g", "remain-on-exit", "on")
        self.tmux("set-option", "-g", "default-shell", "/bin/sh")

    def kill(self) -> None:
        """Kill the server and everything running in it."""
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"],
            capture_output=True,
            env=self.env,
            timeout=self.timeout,
            check=False,
        )


def time_marks_in_tmux(
    argv: Sequence[str], marks: dict[str, re.Pattern[str]], timeout: float
) -> dict[str, float]:
    """Start argv in a fresh tmux session; seconds until each mark first shows on the screen."""
    label = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
    server = TmuxServer(timeout)
    seen: dict[str, float] = {}
    screen = ""
    with tempfile.TemporaryDirectory(prefix="modelbrowse-bench-") as cwd:
        try:
            server.start()
            width, height = TERMINAL_SIZE
            line = "exec " + shlex.join(argv)
            start = time.perf_counter()
            server.tmux(
                "new-session", "-d", "-s", "app", "-x", str(width), "-y", str(height),
                "-c", cwd, line,
            )  # fmt: skip
            polls = 0
            while len(seen) < len(marks):
                screen = server.tmux("capture-pane", "-p", "-t", "app")
                now = time.perf_counter() - start
                for name, pattern in marks.items():
                    if name not in seen and pattern.search(screen):
                        seen[name] = now
                if len(seen) == len(marks):
                    break
                if now > timeout:
                    missing = ", ".join(n for n in marks if n not in seen)
                    raise BenchmarkError(
                        f"`{label}` in tmux: {missing} did not appear within {timeout:g} s "
                        "(the limit per run; --timeout changes it) "
                        f"(seen: {_seen_text(seen)}); last screen:\n{screen.rstrip()}"
                    )
                polls += 1
                if (
                    polls % 50 == 0
                    and server.tmux("display-message", "-p", "-t", "app", "#{pane_dead}").strip()
                    == "1"
                ):
                    screen = server.tmux("capture-pane", "-p", "-t", "app")
                    raise BenchmarkError(
                        f"`{label}` exited before {', '.join(n for n in marks if n not in seen)} "
                        f"appeared (seen: {_seen_text(seen)}); last screen:\n{screen.rstrip()}"
                    )
                time.sleep(POLL_INTERVAL_S)
        finally:
            server.kill()
    return seen


def _seen_text(seen: dict[str, float]) -> str:
    return ", ".join(f"{k} at {v:.2f} s" for k, v in seen.items()) or "nothing"


def tmux_sampler(
    prefix: str,
    argv: Sequence[str],
    marks: dict[str, re.Pattern[str]],
    *,
    full_only_marks: Sequence[str] = (),
) -> Sampler:
    """A sampler timing the marks of one app run; keys are `prefix.mark`.

    With `--quick` the run ends once the other marks are seen, without waiting for
    `full_only_marks`.
    """
    frozen = tuple(argv)
    quick_marks = {k: v for k, v in marks.items() if k not in full_only_marks}

    def measure(ctx: Context) -> dict[str, float]:
        seen = time_marks_in_tmux(frozen, quick_marks if ctx.quick else marks, ctx.timeout)
        return {f"{prefix}.{name}": seconds for name, seconds in seen.items()}

    return Sampler(prefix, measure)


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

ALEXNET = SampleSet(
    "alexnet",
    samplers=(
        tmux_sampler(
            "app", (str(COMMAND), "alexnet"), ALEXNET_MARKS, full_only_marks=("random_init",)
        ),
        python_sampler("import_textual", "import textual.app"),
        python_sampler("import_floor", IMPORT_FLOOR),
        python_sampler("import_build", IMPORT_AND_BUILD, full_only=True),
    ),
    runs=9,
    quick_runs=3,
    warmup=((sys.executable, "-c", IMPORT_FLOOR),),
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
    """Header `modelbrowse  alexnet` painted, against the interpreter importing textual."""
    return ratio_result(
        ctx,
        ALEXNET,
        name="alexnet_first_frame",
        description="`modelbrowse alexnet` in tmux until the header shows (frame painted) / "
        "`import textual.app`",
        value_key="app.frame",
        baseline_key="import_textual",
        baseline_name="python -c 'import textual.app'",
        target=Target(2.0),
    )


@figure("alexnet_tree_shown")
def tree_vs_import_floor(ctx: Context) -> Result:
    """The tree shows `features  Sequential  2.5M`, against importing torch and textual."""
    return ratio_result(
        ctx,
        ALEXNET,
        name="alexnet_tree_shown",
        description="`modelbrowse alexnet` in tmux until the `features` tree line shows / "
        "the import floor",
        value_key="app.tree",
        baseline_key="import_floor",
        baseline_name=f"python -c '{IMPORT_FLOOR}'",
        target=Target(1.1),
    )


@figure("alexnet_tree_vs_build", quick=False)
def tree_vs_import_and_build(ctx: Context) -> Result:
    """The tree shown, against importing and building alexnet with random init."""
    return ratio_result(
        ctx,
        ALEXNET,
        name="alexnet_tree_vs_build",
        description="tree shown / importing and building alexnet (random init) in a script",
        value_key="app.tree",
        baseline_key="import_build",
        baseline_name=f"python -c '{IMPORT_AND_BUILD}'",
        target=Target(1.0, informational=True),
    )


@figure("alexnet_random_init", quick=False)
def random_init(ctx: Context) -> Result:
    """`[random init]` in the header (real tensors ready), against import and build."""
    return ratio_result(
        ctx,
        ALEXNET,
        name="alexnet_random_init",
        description="`modelbrowse alexnet` in tmux until `[random init]` shows (real tensors) / "
        "importing and building alexnet in a script",
        value_key="app.random_init",
        baseline_key="import_build",
        baseline_name=f"python -c '{IMPORT_AND_BUILD}'",
    )
