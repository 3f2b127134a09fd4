"""Statistics of a tensor's values: exact, or estimated at once from a small sample."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import overload

import numpy as np
import torch

from modelbrowse.core.quantized import QuantizedTensor
from modelbrowse.core.quantized_weights import QuantizedWeight
from modelbrowse.core.tensor_bytes import (
    TensorBytesError,
    check_file_holds,
    collapse_repeats,
    overlap_reason,
)

HISTOGRAM_BINS = 24
SAMPLE_SIZE = 4096
# The estimate reads its sample in runs of this many neighbouring values (64 bytes of float32,
# one cache line): 256 places in memory instead of 4,096, which is what a sample costs once
# the app has pushed the tensor out of the caches.
SAMPLE_RUN = 16
GOLDEN_FRACTION = 0.6180339887498949
# Up to this many elements, statistics are computed on one thread (see _one_thread).
ONE_THREAD_LIMIT = 1 << 16
# Statistics go slice by slice: a float32 copy and masks of a whole 131M-element bfloat16
# embedding would take over 2 GiB at once. A slice of 1M elements (4 MB) stays in the cache
# through the masks and sums of a pass; it is also how long (a few ms) a result nobody wants
# any more keeps a core busy.
CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True, slots=True)
class TensorStats:
    """What the detail pane shows for a tensor's values."""

    numel: int
    mean: float
    std: float
    min: float
    max: float
    zero_fraction: float
    nan_count: int
    inf_count: int
    histogram: tuple[int, ...]
    hist_range: tuple[float, float]
    estimated: bool = False


def unavailable_reason(tensor: torch.Tensor | QuantizedWeight) -> str | None:
    """Why a tensor has no statistics to show, or None when it has."""
    if isinstance(tensor, QuantizedWeight):
        from modelbrowse.core import dequantize

        return dequantize.unavailable_reason(tensor)
    if isinstance(tensor, QuantizedTensor):
        return _quantized_reason(tensor)
    if tensor.is_meta:
        return "meta tensor: no data"
    if tensor.numel() == 0:
        return "empty tensor"
    if tensor.is_sparse or tensor.layout is not torch.strided:
        return f"{tensor.layout} tensor: statistics not supported"
    if tensor.dtype.is_complex:
        return "complex tensor: statistics not supported"
    try:
        check_file_holds(tensor)
    except TensorBytesError as exc:
        return str(exc)
    return overlap_reason(tensor)


def _quantized_reason(tensor: QuantizedTensor) -> str | None:
    if tensor.numel() == 0:
        return "empty tensor"
    reason = tensor.unavailable()
    if reason is not None:
        return reason
    try:
        check_file_holds(tensor.packed)
    except TensorBytesError as exc:
        return str(exc)
    return None


class StatsCancelled(Exception):
    """`compute_stats` stopped between slices because its result was no longer wanted."""


def compute_stats(
    tensor: torch.Tensor | QuantizedWeight, cancelled: Callable[[], bool] | None = None
) -> TensorStats:
    """Exact statistics over every element (done off the UI thread for large tensors).

    A big tensor goes slice by slice; `cancelled` is asked between slices, and StatsCancelled
    raised when it says yes (the cursor moved on: the CPU is better left to the next node).
    An expanded view (stride 0) is read once per stored element, its counts multiplied back.
    A quantized weight is dequantized to float32 a few rows at a time.
    """
    if isinstance(tensor, QuantizedWeight):
        from modelbrowse.core import dequantize

        return dequantize.compute_stats_of(tensor, cancelled)
    if isinstance(tensor, QuantizedTensor):
        return _summarise(
            _DequantizedSlices(tensor), tensor.numel(), cancelled or _never, estimated=False
        )
    reason = overlap_reason(tensor)
    if reason is not None:
        raise TensorBytesError(reason)
    distinct, repeat = collapse_repeats(tensor.detach())
    flat = distinct.reshape(-1)
    numel = flat.numel()
    if numel == 0:
        return _no_finite_values(0, 0.0, 0, 0, estimated=False)
    slices = [flat[start : start + CHUNK_ELEMENTS] for start in range(0, numel, CHUNK_ELEMENTS)]
    with _one_thread() if numel <= ONE_THREAD_LIMIT else nullcontext():
        return _summarise(slices, numel, cancelled or _never, estimated=False, repeat=repeat)


def estimate_stats(
    tensor: torch.Tensor | QuantizedWeight, sample_size: int = SAMPLE_SIZE
) -> TensorStats:
    """Statistics from a sample spread evenly over the tensor: under a millisecond at any size
    (a quantized weight: a few runs of its rows, or blocks, dequantized)."""
    if isinstance(tensor, QuantizedWeight):
        from modelbrowse.core import dequantize

        return dequantize.estimate_stats(tensor)
    if isinstance(tensor, QuantizedTensor):
        return _estimate_quantized(tensor, sample_size)
    values, repeat = collapse_repeats(tensor.detach())
    numel = values.numel()
    if numel <= sample_size:
        return compute_stats(tensor)
    # One gather into 16 KB that every statistic then reads in cache (`torch.take` would do
    # both cases, but wakes a thread pool: 5 ms). A non-contiguous tensor is read where it
    # lies, in logical order, never copied whole.
    positions = _sample_positions(numel, sample_size // SAMPLE_RUN).to(values.device)
    if values.is_contiguous():
        sample = values.view(-1).index_select(0, positions)
    else:
        sample = values[torch.unravel_index(positions, values.shape)]
    return _summarise([sample], numel, _never, estimated=True, repeat=repeat)


@lru_cache(maxsize=64)
def _sample_positions(numel: int, runs: int) -> torch.Tensor:
    """Where the estimate reads: a run of SAMPLE_RUN neighbours in each of `runs` equal strata,
    at an offset in the stratum that differs from run to run (a golden-ratio sequence). Evenly
    spaced runs would all fall on the same columns of a matrix whose strata are whole rows
    (alexnet's 4096x9216 weight: the first 16 of 9,216 columns). Tensors of one shape, as in
    every layer of a transformer, share the positions."""
    step = numel // runs
    run = np.arange(runs)
    offsets = (run * GOLDEN_FRACTION % 1.0 * (step - SAMPLE_RUN + 1)).astype(np.int64)
    starts = run * step + offsets
    return torch.from_numpy((starts[:, None] + np.arange(SAMPLE_RUN)).reshape(-1))


def _estimate_quantized(tensor: QuantizedTensor, sample_size: int) -> TensorStats:
    """A quantized weight's sample: whole blocks spread as the runs of `_sample_positions`
    are, only those dequantized."""
    numel, block = tensor.numel(), tensor.block_size
    blocks = numel // block
    runs = max(1, sample_size // block)
    if blocks <= runs:
        return compute_stats(tensor)
    chosen = _sample_positions(blocks * block, runs)[::SAMPLE_RUN] // block
    sample = tensor.values_of(torch.unique_consecutive(chosen))
    return _summarise([sample], numel, _never, estimated=True)


class _DequantizedSlices(Sequence[torch.Tensor]):
    """A quantized weight's values as slices of about CHUNK_ELEMENTS, dequantized when read."""

    def __init__(self, tensor: QuantizedTensor) -> None:
        self.tensor = tensor
        self.step = max(1, CHUNK_ELEMENTS // tensor.block_size)
        self.blocks = tensor.numel() // tensor.block_size

    def __len__(self) -> int:
        return -(-self.blocks // self.step)

    @overload
    def __getitem__(self, index: int) -> torch.Tensor: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[torch.Tensor]: ...
    def __getitem__(self, index: int | slice) -> torch.Tensor | Sequence[torch.Tensor]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if not 0 <= index < len(self):
            raise IndexError(index)
        first = index * self.step
        return self.tensor.blocks(first, min(first + self.step, self.blocks))


def _never() -> bool:
    return False


@contextmanager
def _one_thread() -> Iterator[None]:
    """Small tensors on this thread only (OpenMP's count is per thread): waking a second
    thread for a dtype conversion of a few thousand values costs 5-25 ms when the other core
    is busy, one thread 0.1 ms."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def summarise_chunks(
    chunks: Sequence[torch.Tensor], numel: int, cancelled: Callable[[], bool] | None = None
) -> TensorStats:
    """Exact statistics over chunks of values made as they are read (a quantized weight,
    dequantized a few rows at a time); `numel` values in all."""
    return _summarise(chunks, numel, cancelled or _never, estimated=False)


def _summarise(
    slices: Sequence[torch.Tensor],
    numel: int,
    cancelled: Callable[[], bool],
    estimated: bool,
    repeat: int = 1,
) -> TensorStats:
    """Two passes over the slices (moments and extremes, then the histogram), in NumPy; each
    value stands for `repeat` equal ones (an expanded view), which scales the counts only.

    NumPy, not torch: on one thread its masks, sums and binning of 1M float32 values take
    about 10 ms, where torch took 50 ms (`histc` alone 30 ms). Means and variances are merged
    per slice (Chan et al.), in float64.
    """
    integral = not slices[0].dtype.is_floating_point and slices[0].dtype != torch.bool
    # The share of zeros is of the values read: all of them, or a sample's.
    seen = max(sum(values.numel() for values in slices), 1)
    moments = _Moments()
    finite: np.ndarray | None = None
    for values in slices:
        if cancelled():
            raise StatsCancelled
        # Values near the float64 limits overflow a square: the spread is then inf, unwarned.
        with np.errstate(over="ignore", invalid="ignore"):
            finite = moments.add(_as_array(values))
    if moments.count == 0:
        return _no_finite_values(
            numel * repeat,
            moments.zeros / seen,
            moments.nan_count * repeat,
            moments.inf_count * repeat,
            estimated,
        )
    low, high = moments.low, moments.high
    if high > low:
        counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
        if len(slices) == 1 and finite is not None:
            counts += _bin_counts(finite, low, high)
        else:
            for values in slices:
                if cancelled():
                    raise StatsCancelled
                counts += _bin_counts(_finite_values(_as_array(values)), low, high)
        histogram = tuple((counts * repeat).tolist())
    else:
        histogram = (moments.count * repeat,)
    if not integral:
        low, high = float(low), float(high)
    count = moments.count * repeat
    return TensorStats(
        numel=numel * repeat,
        mean=moments.mean,
        std=(moments.m2 * repeat / (count - 1)) ** 0.5 if count > 1 else 0.0,
        min=low,
        max=high,
        zero_fraction=moments.zeros / seen,
        nan_count=moments.nan_count * repeat,
        inf_count=moments.inf_count * repeat,
        histogram=histogram,
        hist_range=(low, high),
        estimated=estimated,
    )


class _Moments:
    """Counts, extremes, mean and sum of squared deviations, merged slice by slice."""

    def __init__(self) -> None:
        self.count = self.zeros = self.nan_count = self.inf_count = 0
        self.mean = self.m2 = 0.0
        self.low: float = math.inf
        self.high: float = -math.inf

    def add(self, values: np.ndarray) -> np.ndarray:
        """Take one slice in; its finite values are returned (the histogram needs them)."""
        finite = _finite_values(values)
        if finite.size < values.size:
            nans = int(np.count_nonzero(np.isnan(values)))
            self.nan_count += nans
            self.inf_count += values.size - finite.size - nans
        self.zeros += values.size - int(np.count_nonzero(values))
        n = finite.size
        if n == 0:
            return finite
        # Plain ufunc reductions: ndarray.mean and .var go through Python wrappers that cost
        # more than the arithmetic on the estimate's 4,096 values.
        deviations = finite.astype(np.float64)
        chunk_mean = float(np.add.reduce(deviations)) / n
        np.subtract(deviations, chunk_mean, out=deviations)
        np.square(deviations, out=deviations)
        chunk_m2 = float(np.add.reduce(deviations))
        delta = chunk_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.m2 += chunk_m2 + delta * delta * self.count * n / total
        self.count = total
        # .item() keeps an int64 extreme exact, where float() would round it above 2**53.
        self.low = min(self.low, np.minimum.reduce(finite).item())
        self.high = max(self.high, np.maximum.reduce(finite).item())
        return finite


def _as_array(values: torch.Tensor) -> np.ndarray:
    """A slice as NumPy values: float32 and float64 as they are, other floats (and bool) as
    float32, integers as int64 (exact; their moments are taken in float64)."""
    if values.device.type != "cpu":
        values = values.cpu()
    if values.dtype not in (torch.float32, torch.float64, torch.int64):
        is_float = values.dtype.is_floating_point or values.dtype == torch.bool
        values = values.float() if is_float else values.long()
    return values.numpy()


def _finite_values(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind != "f":
        return values
    finite_mask = np.isfinite(values)
    # The common case, every value finite, takes no copy.
    return values if finite_mask.all() else values[finite_mask]


def _bin_counts(finite: np.ndarray, low: float, high: float) -> np.ndarray:
    """How many values fall in each of HISTOGRAM_BINS equal bins over [low, high]."""
    values = finite.astype(np.float64, copy=False)
    width = high - low
    if math.isinf(width):  # float64 values spanning more than the float64 range
        values, low, width = values / 2, low / 2, high / 2 - low / 2
    bins = ((values - low) * (HISTOGRAM_BINS / width)).astype(np.intp)
    # Nothing is below `low`; the maximum itself goes in the last bin.
    np.minimum(bins, HISTOGRAM_BINS - 1, out=bins)
    return np.bincount(bins, minlength=HISTOGRAM_BINS)


def _no_finite_values(
    numel: int, zero_fraction: float, nan_count: int, inf_count: int, estimated: bool
) -> TensorStats:
    """Every value NaN or infinite: the counts, and NaN for what needs a finite value."""
    nan = float("nan")
    return TensorStats(
        numel, nan, nan, nan, nan, zero_fraction, nan_count, inf_count, (), (nan, nan), estimated
    )
