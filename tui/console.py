"""What the command prints: results to standard output, errors and notes to standard error,
each line escaped so that names from a file cannot drive the terminal."""

from __future__ import annotations

import contextlib
import errno
import os
import sys

PROG = "modelbrowse"


def error(message: str, status: int = 2) -> int:
    from modelbrowse.core.units import printable_lines

    # Messages quote paths, keys and recipe fields: escape sequences in them stay inert.
    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        print(f"{PROG}: error: {printable_lines(message)}", file=sys.stderr)
    return status


def say(line: str) -> None:
    from modelbrowse.core.units import printable_lines

    with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
        print(printable_lines(line), file=sys.stderr, flush=True)


def write(text: str) -> None:
    """Text to standard output. Nobody reading it (`| head`, `>&-`) is no error: the output
    goes nowhere and the status stays 0, as `cat` and `ls` leave it for a closed pipe."""
    from modelbrowse.core.errors import ModelBrowseError

    if sys.stdout is None:  # started with standard output closed
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        if exc.errno not in (errno.EPIPE, errno.EBADF):
            raise ModelBrowseError(
                f"cannot write to standard output: {exc.strerror or exc}"
            ) from None
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
