"""Command-line values (`--kw`, `--input-shape`), parsed without importing torch."""

from __future__ import annotations

import ast
from typing import Any

from modelbrowse.core.errors import UsageError

InputShape = tuple[tuple[int, ...], ...]
"""One shape per forward argument: ((1, 3, 224, 224),) for an image classifier."""


def parse_kwargs(pairs: list[str]) -> dict[str, Any]:
    """`['num_classes=10', 'dropout=0.1']` -> {'num_classes': 10, 'dropout': 0.1}.

    Values are Python literals; anything else is kept as a string (`norm=batch`).
    """
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--kw expects NAME=VALUE, got {pair!r}")
        try:
            result[key] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            result[key] = raw.strip()
    return result


def parse_input_shape(text: str) -> InputShape:
    """`1,3,224,224` -> ((1, 3, 224, 224),); `;` separates several inputs."""
    shapes = []
    for part in text.split(";"):
        try:
            dims = tuple(int(d) for d in part.replace("x", ",").split(",") if d.strip())
        except ValueError:
            dims = ()
        if not dims or any(d <= 0 for d in dims):
            raise UsageError(
                f"--input-shape expects positive integers such as 1,3,224,224, got {text!r}"
            )
        shapes.append(dims)
    return tuple(shapes)
