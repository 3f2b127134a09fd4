"""JSON and TOML from untrusted files, with size and nesting bounded.

`json` and `tomllib` raise RecursionError on deep nesting and ValueError on huge numbers; both
become a one-line `ReadError`, and a file is refused by its size before it is read.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from modelbrowse.core.errors import first_line
from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def read_bounded(path: Path, what: str, limit: int) -> bytes:
    """The bytes of a small file, refused by its size first. A FIFO, device or socket is refused
    before it is opened: opening a FIFO waits for a writer."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ReadError(f"{path} is a directory, not {what}")
        if not stat.S_ISREG(info.st_mode):
            raise ReadError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise ReadError(
                f"{path} is too large for {what} ({info.st_size:,} bytes; at most {limit:,})"
            )
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped since the stat
                raise ReadError(f"{path} is not a regular file")
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise ReadError(f"no {what} at {path}") from None
    except IsADirectoryError:
        raise ReadError(f"{path} is a directory, not {what}") from None
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ReadError(f"{path} is too large for {what} (more than {limit:,} bytes)")
    return data


def parse_json(data: bytes | str, where: str) -> Any:
    """JSON text to Python data; every problem is one line naming `where`."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text)
    except UnicodeDecodeError:
        raise ReadError(f"{where} is not UTF-8 text") from None
    except RecursionError:
        raise ReadError(f"{where} is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ReadError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:  # an integer of more digits than CPython converts
        raise ReadError(f"{where} is not usable JSON: {first_line(exc)}") from None


def read_json(path: Path, what: str = "a JSON file", limits: Limits = DEFAULT_LIMITS) -> Any:
    """A JSON file of at most `limits.text_bytes`."""
    return parse_json(read_bounded(path, what, limits.text_bytes), str(path))


def parse_toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise ReadError(f"{where} is nested too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        raise ReadError(f"{where} is not valid TOML: {first_line(exc)}") from None
    except ValueError as exc:
        raise ReadError(f"{where} is not usable TOML: {first_line(exc)}") from None


def read_toml(path: Path, what: str = "a TOML file", limits: Limits = DEFAULT_LIMITS) -> Any:
    data = read_bounded(path, what, limits.text_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ReadError(f"{path} is not UTF-8 text") from None
    return parse_toml(text, str(path))


def depth_of(value: Any, limit: int) -> int:
    """The nesting depth of JSON-like data, walking at most to `limit` + 1 (no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest
