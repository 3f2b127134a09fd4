"""The app in a real terminal (tmux), and the import floors it is measured against.

The app runs in a detached tmux session (120x40, TERM=xterm-256color, its own server socket);
the pane is read with `capture-pane -p` about every 10 ms, and a mark's time is when the capture
that first shows it returned, measured from just before `tmux new-session` (the server is started
beforehand, so its own start-up is not counted). With `settle`, the app's peak resident memory
(`VmHWM`) is read that many seconds after the last mark, so that the work starting with the first
screen is counted too. The server is killed after every run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks import BenchmarkError, Context, EnvironmentProblem, Sampler

COMMAND = Path(sys.executable).parent / "modelbrowse"
TERMINAL_SIZE = (120, 40)
POLL_INTERVAL_S = 0.010
MIB = float(1 << 20)

# What the app imports before showing a torchvision model: the floor of the first-screen figures.
IMPORT_FLOOR = "import torch, torchvision, textual.app"


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

    def display(self, fmt: str) -> str:
        """A format of the app's pane (`#{pane_pid}`, `#{pane_dead}`)."""
        return self.tmux("display-message", "-p", "-t", "app", fmt).strip()

    def kill(self) -> None:
        """Kill the server and everything running in it."""
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"],
            capture_output=True,
            env=self.env,
            timeout=self.timeout,
            check=False,
        )


def watch_in_tmux(
    argv: Sequence[str],
    marks: dict[str, re.Pattern[str]],
    timeout: float,
    *,
    settle: float | None = None,
) -> tuple[dict[str, float], int | None]:
    """Start argv in a fresh tmux session: seconds until each mark first shows on the screen,
    and, with `settle`, the app's VmHWM in bytes that many seconds after the last mark."""
    label = shlex.join([Path(argv[0]).name, *argv[1:]])
    server = TmuxServer(timeout)
    seen: dict[str, float] = {}
    peak: int | None = None
    pid: int | None = None
    with tempfile.TemporaryDirectory(prefix="modelbrowse-bench-") as cwd:
        try:
            server.start()
            width, height = TERMINAL_SIZE
            start = time.perf_counter()
            server.tmux(
                "new-session", "-d", "-s", "app", "-x", str(width), "-y", str(height),
                "-c", cwd, "exec " + shlex.join(argv),
            )  # fmt: skip
            polls = 0
            while True:
                screen = server.tmux("capture-pane", "-p", "-t", "app")
                now = time.perf_counter() - start
                seen.update(
                    (name, now)
                    for name, pattern in marks.items()
                    if name not in seen and pattern.search(screen)
                )
                if len(seen) == len(marks):
                    break
                polls += 1
                dead = polls % 50 == 0 and server.display("#{pane_dead}") == "1"
                if now > timeout or dead:
                    missing = ", ".join(n for n in marks if n not in seen)
                    why = (
                        f"exited before {missing} appeared"
                        if dead
                        else f"{missing} did not appear within {timeout:g} s (the limit per "
                        "run; --timeout changes it)"
                    )
                    screen = server.tmux("capture-pane", "-p", "-t", "app")
                    raise BenchmarkError(
                        f"`{label}` in tmux: {why} (seen: {_seen_text(seen)}); "
                        f"last screen:\n{screen.rstrip()}"
                    )
                time.sleep(POLL_INTERVAL_S)
            if settle is not None:
                time.sleep(settle)
                peak = vm_hwm(_pane_pid(server))
        finally:
            # Read after the marks, so the polling above does no extra tmux call.
            with contextlib.suppress(BenchmarkError, ValueError):
                pid = _pane_pid(server)
            server.kill()
            if pid is not None:
                reap(pid, label)
    return seen, peak


def _pane_pid(server: TmuxServer) -> int:
    return int(server.display("#{pane_pid}"))


def reap(pid: int, label: str, timeout: float = 10.0) -> None:
    """Wait for the app to leave after its terminal died; kill it (and say so) if it does not,
    so that no run's leftover process slows the next."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    print(
        f"warning: `{label}` was still running {timeout:g} s after its terminal was killed",
        file=sys.stderr,
    )


def time_marks_in_tmux(
    argv: Sequence[str], marks: dict[str, re.Pattern[str]], timeout: float
) -> dict[str, float]:
    """Start argv in a fresh tmux session; seconds until each mark first shows on the screen."""
    return watch_in_tmux(argv, marks, timeout)[0]


def _seen_text(seen: dict[str, float]) -> str:
    return ", ".join(f"{k} at {v:.2f} s" for k, v in seen.items()) or "nothing"


def vm_hwm(pid: int) -> int:
    """A process's peak resident set size in bytes (/proc/PID/status VmHWM)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError as exc:
        raise BenchmarkError(f"cannot read the app's memory (pid {pid}): {exc}") from exc
    raise BenchmarkError(f"no VmHWM in /proc/{pid}/status")


def tmux_sampler(
    prefix: str,
    argv: Sequence[str],
    marks: dict[str, re.Pattern[str]],
    *,
    full_only_marks: Sequence[str] = (),
    shown: Sequence[str] = (),
    settle: float | None = None,
) -> Sampler:
    """A sampler timing the marks of one app run; keys are `prefix.mark`.

    With `--quick` the run ends once the other marks are seen, without waiting for
    `full_only_marks`. With `shown`, `prefix.shown` is when all those marks were on the screen
    (the latest of them); with `settle`, `prefix.peak_mib` is the app's VmHWM in MiB then.
    """
    frozen = tuple(argv)
    quick_marks = {k: v for k, v in marks.items() if k not in full_only_marks}

    def measure(ctx: Context) -> dict[str, float]:
        chosen = quick_marks if ctx.quick else marks
        seen, peak = watch_in_tmux(frozen, chosen, ctx.timeout, settle=settle)
        samples = {f"{prefix}.{name}": seconds for name, seconds in seen.items()}
        if shown:
            samples[f"{prefix}.shown"] = max(seen[name] for name in shown)
        if peak is not None:
            samples[f"{prefix}.peak_mib"] = peak / MIB
        return samples

    return Sampler(prefix, measure)


def floor_sampler(key: str, code: str) -> Sampler:
    """`python -c CODE`: wall time, and its maximum RSS (`KEY.peak_mib`) from `wait4`."""
    argv = (sys.executable, "-c", code)

    def measure(ctx: Context) -> dict[str, float]:
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = start + ctx.timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                process.wait()
                raise BenchmarkError(f"`{shlex.join(argv)}` did not finish in {ctx.timeout:g} s")
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise BenchmarkError(f"`{shlex.join(argv)}` exited with status {process.returncode}")
        return {key: elapsed, f"{key}.peak_mib": usage.ru_maxrss * 1024 / MIB}

    return Sampler(key, measure)


def running(pid: int) -> bool:
    """Alive and not a zombie (one nobody has reaped yet has left all the same)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
