"""A torchinfo summary of a model for an example input."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from modelbrowse.core.arguments import ExampleInput, InputShape, describe_input
from modelbrowse.core.errors import ModelBrowseError

if TYPE_CHECKING:
    from modelbrowse.core.sources.base import Source

_UNITS = re.compile(r"\(Units\.(\w+)\)")
_UNIT_WORDS = {"NONE": "", "KILOBYTES": "K", "MEGABYTES": "M", "GIGABYTES": "G", "TERABYTES": "T"}


def summarize(
    model: nn.Module,
    input_shape: InputShape,
    depth: int = 3,
    dtypes: Sequence[str] | None = None,
) -> str:
    """torchinfo's table (output shape, parameters, mult-adds per layer) as text, for inputs of
    `input_shape` and `dtypes` (torch's names; float32 by default).

    A model still on `meta` is summarised on `meta`: shapes and counts without memory or compute.
    """
    import torchinfo

    device = _model_device(model)
    names = list(dtypes) if dtypes is not None else ["float32"] * len(input_shape)
    try:
        with torch.no_grad():
            stats = torchinfo.summary(
                model,
                input_size=[tuple(shape) for shape in input_shape],
                dtypes=[getattr(torch, name) for name in names],
                device=device,
                depth=depth,
                verbose=0,
                col_names=("output_size", "num_params", "mult_adds"),
                row_settings=("var_names",),
            )
    except Exception as exc:  # any forward can fail; the user gets the reason inline
        raise ModelBrowseError(
            f"summary failed for input {describe_input(input_shape, tuple(names))}: "
            f"{_root_cause(exc)}"
        ) from exc
    return _UNITS.sub(lambda m: f"({_UNIT_WORDS.get(m.group(1), m.group(1))})", str(stats))


def source_summary(source: Source, example: ExampleInput | None) -> str:
    """`--print --summary`: the summary of the model `source` builds (on `meta` where it can),
    or a ModelBrowseError saying which `--input-shape` to give."""
    from modelbrowse.core.example_inputs import input_dtypes, input_hint

    model, _ = source.build_structure()
    if example is None:
        raise ModelBrowseError(
            f"no example input for this model: give --input-shape {input_hint(model)}"
        )
    dtypes = input_dtypes(model, example)
    title = f"torchinfo summary for input {describe_input(example.shapes, dtypes)}"
    return f"{title}\n{summarize(model, example.shapes, dtypes=dtypes)}\n"


def _model_device(model: nn.Module) -> torch.device:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _root_cause(exc: BaseException) -> str:
    # torchinfo wraps the forward's error in "Failed to run torchinfo..."; the cause is the news.
    while exc.__cause__ is not None:
        exc = exc.__cause__
    # Whole: the reason is often on its last line, the operation that failed on its first.
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
