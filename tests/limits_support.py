"""A deadline for hostile inputs: a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType


class Hung(Exception):
    """The block ran past its deadline."""


@contextlib.contextmanager
def within(seconds: int) -> Iterator[None]:
    """Fail with Hung when the block runs longer than `seconds` (generous: a hang, not speed)."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"still running after {seconds} s")

    before = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


ROOT = Path(__file__).resolve().parent.parent


def run_script(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """`script` in a child interpreter, given `folder`: a missed check there is a bus error in
    the child, not the end of the test run."""
    return subprocess.run(
        [sys.executable, "-c", script, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
