"""Unexpected errors: one line for the user, the full traceback in a log file named to them."""

from __future__ import annotations

import datetime
import os
import traceback
from pathlib import Path

from modelbrowse.core.units import printable

# A log past this size is moved aside (one old generation kept), so it never grows unbounded.
MAX_LOG_BYTES = 1 << 20
MAX_MESSAGE_CHARS = 200


def log_path() -> Path:
    """Where tracebacks go: the user's state folder (`$XDG_STATE_HOME/modelbrowse/log`)."""
    from platformdirs import user_log_path

    return user_log_path("modelbrowse") / "modelbrowse.log"


def record_error(error: BaseException, context: str = "") -> Path | None:
    """Append `error`'s traceback to the log; its path, or None if it cannot be written."""
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > MAX_LOG_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        with path.open("a", encoding="utf-8") as log:
            log.write(f"--- {stamp} {context}\n")
            log.write("".join(traceback.format_exception(error)))
    except OSError:
        return None
    return path


def one_line(error: BaseException) -> str:
    """`KeyError: 'x'`: the type and the first line of the message, printable and elided."""
    text = str(error).strip().splitlines()
    message = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return printable(message, MAX_MESSAGE_CHARS)


def where_logged(path: Path | None) -> str:
    return f"traceback in {path}" if path is not None else "the log could not be written"
