"""A deadline for hostile inputs: a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
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
