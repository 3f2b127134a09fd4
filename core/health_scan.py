"""One pass over a tensor's values for the health check: NaN and Inf, one value throughout,
and a sample of its bytes; hashes and differences read a slice at a time."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from modelbrowse.core.stats import CHUNK_ELEMENTS

# The sample that tells tensors of one dtype and shape apart before all their bytes are hashed.
SAMPLE_RUNS = 64
SAMPLE_BYTES = 64
# Slices of a scan: large enough that a slice's fixed costs vanish beside its values (a
# 2 GiB checkpoint checks a third faster than in slices of 4M), small enough that the masks
# of a slice with NaN stay small.
SCAN_ELEMENTS = 16 * CHUNK_ELEMENTS
# Elements compared first when looking for one value throughout: most tensors differ in them,
# and then the whole slice is not compared.
PREFIX_ELEMENTS = 4096


@dataclass(frozen=True, slots=True)
class Scan:
    """What one pass over a tensor's values found."""

    numel: int
    floating: bool = True
    nan: int = 0
    inf: int = 0
    first_bad: tuple[int, ...] | None = None  # where the first NaN or Inf is
    value: float | None = None  # the one value every element has, or None
    sample: bytes | None = None  # a hash of sampled bytes: apart, the tensors differ


def scan_tensor(tensor: torch.Tensor, sample: bool = False) -> Scan:
    """NaN and Inf counts, the one value (if every element has it) and, with `sample`, a
    hash of sampled bytes; read SCAN_ELEMENTS at a time."""
    values = tensor.detach()
    numel = values.numel()
    if numel == 0:
        return Scan(0, values.dtype.is_floating_point, sample=b"" if sample else None)
    flat = values.reshape(-1)  # a view when contiguous; else a copy of this tensor alone
    floating = values.dtype.is_floating_point
    first = flat[:1]
    same = True
    nan = inf = 0
    first_bad: tuple[int, ...] | None = None
    for start in range(0, numel, SCAN_ELEMENTS):
        chunk = flat[start : start + SCAN_ELEMENTS]
        # A sum is one fast pass, finite unless a value is not (or the sum overflows).
        if floating and not math.isfinite(float(chunk.sum(dtype=_sum_dtype(chunk.dtype)))):
            nans, infs = torch.isnan(chunk), torch.isinf(chunk)
            nan += int(nans.sum())
            inf += int(infs.sum())
            if first_bad is None and bool((nans | infs).any()):
                where = start + int(torch.nonzero(nans | infs)[0, 0])
                first_bad = tuple(int(i) for i in np.unravel_index(where, tuple(values.shape)))
        if same:  # once two values differ, the rest need no comparison
            same = bool((chunk[:PREFIX_ELEMENTS] == first).all()) and bool((chunk == first).all())
    value = float(first.item()) if same and not first.dtype.is_complex else None
    sampled = _sampled(flat) if sample else None
    return Scan(numel, floating, nan, inf, first_bad, value, sampled)


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype.itemsize < 4 else dtype


def _sampled(flat: torch.Tensor) -> bytes:
    """A hash of SAMPLE_RUNS runs of SAMPLE_BYTES spread over the bytes: equal tensors have
    equal samples, and tensors of different values almost never do."""
    raw = flat.contiguous().view(torch.uint8)
    hasher = hashlib.blake2b(digest_size=16)
    size = raw.numel()
    if size <= SAMPLE_RUNS * SAMPLE_BYTES:
        hasher.update(raw.cpu().numpy().data)
    else:
        for run in range(SAMPLE_RUNS):
            start = run * (size - SAMPLE_BYTES) // (SAMPLE_RUNS - 1)
            hasher.update(raw[start : start + SAMPLE_BYTES].cpu().numpy().data)
    return hasher.digest()


def full_digest(tensor: torch.Tensor) -> bytes:
    """A hash of every byte, read CHUNK_ELEMENTS at a time."""
    flat = tensor.detach().reshape(-1)
    hasher = hashlib.blake2b(digest_size=16)
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        chunk = flat[start : start + CHUNK_ELEMENTS].contiguous()
        hasher.update(chunk.view(torch.uint8).cpu().numpy().data)
    return hasher.digest()


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest |a - b| over tensors of one shape, CHUNK_ELEMENTS at a time (NaN where
    either side has NaN)."""
    left, right = a.detach().reshape(-1), b.detach().reshape(-1)
    largest = 0.0
    for start in range(0, left.numel(), CHUNK_ELEMENTS):
        end = start + CHUNK_ELEMENTS
        gap = (left[start:end].double() - right[start:end].double().to(left.device)).abs()
        found = float(gap.max())
        if math.isnan(found):
            return math.nan
        largest = max(largest, found)
    return largest
