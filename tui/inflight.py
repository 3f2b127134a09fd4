"""Saves still writing when the app leaves: the process waits for them, whatever ended it.

A quit, SIGTERM or a dropped terminal during a save would otherwise end the process halfway
through the write, leaving a temporary file and no saved weights. Standard library only: the
console script's `--help` path must not pay for more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# A save still writing after this long is stuck (a dead network mount): leave without it.
SAVE_GRACE_S = 600.0

_lock = threading.Condition()
_writing: list[str] = []


@contextmanager
def save_in_flight(path: str) -> Iterator[None]:
    """Mark the disk work of one save; the process does not leave while it runs."""
    with _lock:
        _writing.append(path)
    try:
        yield
    finally:
        with _lock:
            _writing.remove(path)
            _lock.notify_all()


def saves_in_flight() -> list[str]:
    with _lock:
        return list(_writing)


def wait_for_saves(timeout: float = SAVE_GRACE_S) -> bool:
    """Block until no save is writing, or `timeout` passes; True when none is."""
    deadline = time.monotonic() + timeout
    with _lock:
        while _writing:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _lock.wait(left)
    return True


def finish_saves(say: Callable[[str], None]) -> None:
    """Before the process leaves: a save still writing finishes first, and `say` tells why
    the process waits (and, past the grace, that the save did not finish)."""
    writing = saves_in_flight()
    if not writing:
        return
    say(f"modelbrowse: finishing the save to {writing[0]}…")
    if not wait_for_saves():
        say(
            f"modelbrowse: error: the save to {writing[0]} did not finish; "
            "its temporary file is left beside it"
        )
