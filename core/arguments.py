"""Command-line values (`--kw`, `--input-shape`, `--dtype`), parsed without importing torch."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any

from modelbrowse.core.errors import UsageError
from modelbrowse.core.units import human_bytes

InputShape = tuple[tuple[int, ...], ...]
"""One shape per forward argument: ((1, 3, 224, 224),) for an image classifier."""

# The dtype words `--input-dtype` and `SHAPE:DTYPE` accept, to torch's names for them.
INPUT_DTYPES: dict[str, str] = {
    "long": "int64",
    "int64": "int64",
    "int": "int32",
    "int32": "int32",
    "float": "float32",
    "float32": "float32",
    "half": "float16",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "double": "float64",
    "float64": "float64",
    "bool": "bool",
}
# An example input is a probe's or a shape check's sample, not a dataset: 1 GiB of float32 at
# most, so that a typo in a batch size is a line rather than an allocation the machine refuses.
MAX_INPUT_VALUES = 1 << 28

_DTYPE_WORDS = "long, int, float, half, bfloat16, double, bool (or torch's names: int64, ...)"


@dataclass(frozen=True)
class ExampleInput:
    """The example input the command line asks for: a shape and a dtype per forward argument.

    A dtype is torch's name (`int64`), or None where the model decides (`input_dtypes`).
    """

    shapes: InputShape
    dtypes: tuple[str | None, ...]

    @classmethod
    def of(cls, shapes: InputShape, dtype: str | None = None) -> ExampleInput:
        """`shapes` with one dtype (or None) for all of them."""
        return cls(shapes, (dtype,) * len(shapes))


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
    return parse_example_input(text).shapes


def parse_input_dtype(word: str, flag: str = "--input-dtype") -> str:
    """`long` -> `int64`: torch's name for a dtype word, or a UsageError listing the words."""
    name = INPUT_DTYPES.get(word.strip().lower())
    if name is None:
        raise UsageError(f"{flag} expects one of {_DTYPE_WORDS}, got {word.strip()!r}")
    return name


def parse_example_input(text: str, dtype: str | None = None) -> ExampleInput:
    """`1,16:long;1,16` -> shapes and dtypes; `dtype` (a word, from `--input-dtype`) for the
    inputs without one of their own."""
    default = None if dtype is None else parse_input_dtype(dtype)
    shapes: list[tuple[int, ...]] = []
    dtypes: list[str | None] = []
    for part in text.split(";"):
        part, colon, word = part.partition(":")
        try:
            dims = tuple(int(d) for d in part.replace("x", ",").split(",") if d.strip())
        except ValueError:
            dims = ()
        if not dims or any(d <= 0 for d in dims):
            raise UsageError(
                f"--input-shape expects positive integers such as 1,3,224,224, got {text!r}"
            )
        shapes.append(dims)
        dtypes.append(parse_input_dtype(word, "--input-shape SHAPE:DTYPE") if colon else default)
    values = sum(math.prod(dims) for dims in shapes)
    if values > MAX_INPUT_VALUES:  # checked before torch allocates anything
        raise UsageError(
            f"--input-shape {text} is {values:,} values ({human_bytes(values * 4)} as float32); "
            f"an example input holds at most {MAX_INPUT_VALUES:,} (a smaller batch shows the same)"
        )
    return ExampleInput(tuple(shapes), tuple(dtypes))


def example_input(
    shape: str | None, dtype: str | None, default: InputShape | None
) -> ExampleInput | None:
    """`--input-shape` and `--input-dtype` as typed, else `default` (a source's) in `dtype`,
    else None."""
    if shape:
        return parse_example_input(shape, dtype)
    if default is None:
        return None
    return ExampleInput.of(default, None if dtype is None else parse_input_dtype(dtype))


def describe_input(shapes: InputShape, dtypes: tuple[str, ...] | None = None) -> str:
    """`1,16 (int64)`: the shapes as typed, each with its dtype where it is not float32."""
    parts = []
    for i, shape in enumerate(shapes):
        text = ",".join(str(d) for d in shape)
        dtype = dtypes[i] if dtypes is not None and i < len(dtypes) else "float32"
        parts.append(text if dtype == "float32" else f"{text} ({dtype})")
    return "; ".join(parts)


# `--dtype` and the write dialog's words, to torch's names for the dtypes a write can cast to.
WRITE_DTYPES: dict[str, str] = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
}


def parse_dtype(text: str, flag: str = "--dtype") -> str:
    """`bf16` -> `bfloat16`: torch's name for a floating dtype to write in, or a UsageError."""
    name = WRITE_DTYPES.get(text.strip().lower())
    if name is None:
        raise UsageError(f"{flag} expects bf16, fp16 or fp32, got {text.strip()!r}")
    return name
