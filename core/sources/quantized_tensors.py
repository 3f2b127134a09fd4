"""Quantized layers among a checkpoint's tensors: the reading layer's rules on torch tensors."""

from __future__ import annotations

from pathlib import Path

import torch

from modelbrowse.core.reading.limits import ReadError
from modelbrowse.core.reading.quantized_layouts import (
    Described,
    QuantizedKeys,
    find_quantized,
    read_quant_config,
)
from modelbrowse.core.tensor_bytes import TensorBytesError, check_file_holds


def describe_tensor(tensor: torch.Tensor) -> Described:
    return str(tensor.dtype).removeprefix("torch."), tuple(tensor.shape)


def quantized_tensors(tensors: dict[str, torch.Tensor], folder: Path) -> QuantizedKeys:
    """The quantized layers among `tensors`, with `folder`'s quantization config."""
    config, rows = read_quant_config(folder)

    def read_small(key: str, limit: int) -> bytes:
        tensor = tensors[key]
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes > limit:
            raise ReadError(f"a {nbytes:,}-byte tensor where at most {limit:,} are expected")
        if tensor.is_meta:
            raise ReadError(f"{key!r} has no data here")
        try:
            check_file_holds(tensor, key)  # a mapped file cut since it was opened
        except TensorBytesError as exc:
            raise ReadError(str(exc)) from None
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        return bytes(raw.numpy())

    found = find_quantized(tensors, describe_tensor, config, read_small)
    found.rows[:0] = rows
    return found
