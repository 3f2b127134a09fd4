"""Saves still writing when the app leaves: the process waits for them, whatever ended it.

A quit, SIGTERM or a dropped terminal during a save would otherwise end the process halfway
through the write, leaving a temporary file and no saved weights. Standard library only: the
console script's `--help` path must not pay for more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
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
