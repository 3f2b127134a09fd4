"""A torchinfo summary of a model for an example input."""

from __future__ import annotations

import itertools
import re

import torch
from torch import nn

from modelbrowse.core.arguments import InputShape
from modelbrowse.core.errors import ModelBrowseError

_UNITS = re.compile(r"\(Units\.(\w+)\)")
_UNIT_WORDS = {"NONE": "", "KILOBYTES": "K", "MEGABYTES": "M", "GIGABYTES": "G", "TERABYTES": "T"}


def summarize(model: nn.Module, input_shape: InputShape, depth: int = 3) -> str:
    """torchinfo's table (output shape, parameters, mult-adds per layer) as text.

    A model still on `meta` is summarised on `meta`: shapes and counts without memory or compute.
    """
    import torchinfo

    device = _model_device(model)
    try:
        with torch.no_grad():
            stats = torchinfo.summary(
                model,
                input_size=[tuple(shape) for shape in input_shape],
                device=device,
                depth=depth,
                verbose=0,
                col_names=("output_size", "num_params", "mult_adds"),
                row_settings=("var_names",),
            )
    except Exception as exc:  # any forward can fail; the user gets the reason inline
        raise ModelBrowseError(
            f"summary failed for input {_shapes(input_shape)}: {_root_cause(exc)}"
        ) from exc
    return _UNITS.sub(lambda m: f"({_UNIT_WORDS.get(m.group(1), m.group(1))})", str(stats))


def _model_device(model: nn.Module) -> torch.device:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _shapes(input_shape: InputShape) -> str:
    return "; ".join(",".join(str(d) for d in shape) for shape in input_shape)


def _root_cause(exc: BaseException) -> str:
    # torchinfo wraps the forward's error in "Failed to run torchinfo..."; the cause is the news.
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
