"""Statistics of a tensor's values: exact, or estimated at once from a small sample."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

HISTOGRAM_BINS = 24
SAMPLE_SIZE = 4096
# Up to this many elements, statistics are computed on one thread (see _one_thread).
ONE_THREAD_LIMIT = 1 << 16
# Above this many elements, exact statistics go chunk by chunk: a float32 copy and masks of a
# whole 131M-element bfloat16 embedding would take over 2 GiB at once. A slice of 1M elements
# (4 MB) stays in the cache through the masks and sums of a pass, which made alexnet's 37.7M
# values twice as quick as slices of 4M; it is also how long (a few ms) a result nobody wants
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


def unavailable_reason(tensor: torch.Tensor) -> str | None:
    """Why a tensor has no statistics to show, or None when it has."""
    if tensor.is_meta:
        return "meta tensor: no data"
    if tensor.numel() == 0:
        return "empty tensor"
    if tensor.is_sparse or tensor.layout is not torch.strided:
        return f"{tensor.layout} tensor: statistics not supported"
    if tensor.dtype.is_complex:
        return "complex tensor: statistics not supported"
    return None


class StatsCancelled(Exception):
    """`compute_stats` stopped between slices because its result was no longer wanted."""


def compute_stats(tensor: torch.Tensor, cancelled: Callable[[], bool] | None = None) -> TensorStats:
    """Exact statistics over every element (done off the UI thread for large tensors).

    A big tensor goes slice by slice; `cancelled` is asked between slices, and StatsCancelled
    raised when it says yes (the cursor moved on: the CPU is better left to the next node).
    """
    flat = tensor.detach().reshape(-1)
    if flat.numel() > CHUNK_ELEMENTS and flat.device.type == "cpu":
        return _chunked_stats(flat, cancelled or _never)
    if flat.numel() <= ONE_THREAD_LIMIT:
        with _one_thread():
            return _stats(flat, estimated=False)
    return _stats(flat, estimated=False)


def _never() -> bool:
    return False


def _chunked_stats(flat: torch.Tensor, cancelled: Callable[[], bool]) -> TensorStats:
    """The same figures in two passes over slices, with memory for one slice at a time.

    Means and variances are merged per slice (Chan et al.), in float64.
    """
    integral = not flat.dtype.is_floating_point and flat.dtype != torch.bool
    count = nan_count = inf_count = zeros = 0
    mean = m2 = 0.0
    low, high = float("inf"), float("-inf")
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        if cancelled():
            raise StatsCancelled
        values = _as_float(flat[start : start + CHUNK_ELEMENTS], integral)
        finite_mask = torch.isfinite(values)
        nans = int(torch.isnan(values).sum())
        nan_count += nans
        zeros += int((values == 0).sum())
        finite = values if bool(finite_mask.all()) else values[finite_mask]
        inf_count += values.numel() - finite.numel() - nans
        n = finite.numel()
        if n == 0:
            continue
        chunk_mean = float(finite.sum(dtype=torch.float64)) / n
        chunk_m2 = float(((finite - chunk_mean) ** 2).sum(dtype=torch.float64))
        delta = chunk_mean - mean
        total = count + n
        mean += delta * n / total
        m2 += chunk_m2 + delta * delta * count * n / total
        count = total
        low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    numel = flat.numel()
    if count == 0:
        return _no_finite_values(numel, zeros / numel, nan_count, inf_count, estimated=False)
    if integral:
        low, high = int(low), int(high)
    std = (m2 / (count - 1)) ** 0.5 if count > 1 else 0.0
    if high > low:
        counts = torch.zeros(HISTOGRAM_BINS, dtype=torch.float64)
        for start in range(0, numel, CHUNK_ELEMENTS):
            if cancelled():
                raise StatsCancelled
            values = _as_float(flat[start : start + CHUNK_ELEMENTS], integral)
            if values.dtype != torch.float64 and high - low > torch.finfo(values.dtype).max:
                values = values.double()  # the range itself overflows this dtype
            counts += torch.histc(values[torch.isfinite(values)], HISTOGRAM_BINS, low, high)
        histogram = tuple(int(c) for c in counts)
    else:
        histogram = (count,)
    return TensorStats(
        numel=numel,
        mean=mean,
        std=std,
        min=low,
        max=high,
        zero_fraction=zeros / numel,
        nan_count=nan_count,
        inf_count=inf_count,
        histogram=histogram,
        hist_range=(low, high),
    )


def estimate_stats(tensor: torch.Tensor, sample_size: int = SAMPLE_SIZE) -> TensorStats:
    """Statistics from an evenly strided sample: under a millisecond at any size."""
    values = tensor.detach()
    numel = values.numel()
    with _one_thread():
        if numel <= sample_size:
            return _stats(values.reshape(-1), estimated=False)
        step = numel // sample_size
        # One gather of the scattered values into 16 KB that every statistic then reads in
        # cache; a non-contiguous tensor is read where it lies, never copied whole.
        if values.is_contiguous():
            sample = values.view(-1)[::step][:sample_size].contiguous()
        else:
            positions = torch.arange(0, step * sample_size, step)
            sample = values[torch.unravel_index(positions, values.shape)]
        return _stats(sample, estimated=True, numel=numel)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Small tensors on this thread only (OpenMP's count is per thread): waking a second
    thread for 4,096 values costs 5-25 ms when the other core is busy, one thread 0.1 ms."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _no_finite_values(
    numel: int, zero_fraction: float, nan_count: int, inf_count: int, estimated: bool
) -> TensorStats:
    """Every value NaN or infinite: the counts, and NaN for what needs a finite value."""
    nan = float("nan")
    return TensorStats(
        numel, nan, nan, nan, nan, zero_fraction, nan_count, inf_count, (), (nan, nan), estimated
    )


def _as_float(values: torch.Tensor, integral: bool) -> torch.Tensor:
    if values.dtype in (torch.float32, torch.float64):
        return values
    return values.double() if integral else values.float()


def _stats(flat: torch.Tensor, estimated: bool, numel: int | None = None) -> TensorStats:
    if flat.device.type != "cpu":
        flat = flat.cpu()
    # float32 and float64 are used as they are; a float64 copy of a large tensor costs memory.
    # Integers (small: counters, indices) go to float64, which holds int64 values near exactly.
    integral = not flat.dtype.is_floating_point and flat.dtype != torch.bool
    if flat.dtype in (torch.float32, torch.float64):
        values = flat
    else:
        values = flat.double() if integral else flat.float()
    # The common case, every value finite, takes one check instead of two masks and counts:
    # the estimate is a few thousand values, where each torch call is most of the cost.
    finite_mask = torch.isfinite(values)
    if bool(finite_mask.all()):
        nan_count = inf_count = 0
        finite = values
    else:
        nan_count = int(torch.isnan(values).sum())
        inf_count = values.numel() - int(finite_mask.sum()) - nan_count
        finite = values[finite_mask]
    zero_fraction = float((values == 0).sum()) / max(values.numel(), 1)
    if finite.numel() == 0:
        return _no_finite_values(
            numel or values.numel(), zero_fraction, nan_count, inf_count, estimated
        )
    low: float
    high: float
    if integral:
        low_value, high_value = torch.aminmax(flat)
        low, high = int(low_value), int(high_value)  # exact, even above 2**53
    else:
        low_value, high_value = torch.aminmax(finite)
        low, high = float(low_value), float(high_value)
    if finite.numel() > 1:
        std_value, mean_value = torch.std_mean(finite)
        std, mean = float(std_value), float(mean_value)
    else:
        std, mean = 0.0, float(finite[0])
    if high > low:
        binned = finite
        if finite.dtype != torch.float64 and high - low > torch.finfo(finite.dtype).max:
            binned = finite.double()  # the range itself overflows this dtype
        histogram = tuple(int(c) for c in torch.histc(binned, HISTOGRAM_BINS, low, high).tolist())
    else:
        histogram = (finite.numel(),)
    return TensorStats(
        numel=numel or values.numel(),
        mean=mean,
        std=std,
        min=low,
        max=high,
        zero_fraction=zero_fraction,
        nan_count=nan_count,
        inf_count=inf_count,
        histogram=histogram,
        hist_range=(low, high),
        estimated=estimated,
    )
