"""Tensor statistics: exact values, estimates on big tensors, and when there are none."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modelbrowse.core import stats
from modelbrowse.core.stats import (
    HISTOGRAM_BINS,
    SAMPLE_SIZE,
    TensorStats,
    compute_stats,
    estimate_stats,
    unavailable_reason,
)

NAN = float("nan")
INF = float("inf")


def test_known_values() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 0.0, 0.0]
    stats = compute_stats(torch.tensor(values))
    assert stats.numel == 6
    assert stats.mean == pytest.approx(statistics.mean(values))
    assert stats.std == pytest.approx(statistics.stdev(values), rel=1e-6)
    assert (stats.min, stats.max) == (0.0, 4.0)
    assert stats.zero_fraction == pytest.approx(2 / 6)
    assert (stats.nan_count, stats.inf_count) == (0, 0)
    assert not stats.estimated


def test_histogram_bins_cover_the_range() -> None:
    stats = compute_stats(torch.tensor([1.0, 2.0, 3.0, 4.0, 0.0, 0.0]))
    assert len(stats.histogram) == HISTOGRAM_BINS
    assert stats.hist_range == (0.0, 4.0)
    assert sum(stats.histogram) == 6
    assert stats.histogram[0] == 2  # both zeros in the lowest bin
    assert stats.histogram[-1] == 1  # the maximum in the highest bin


def test_statistics_of_a_2d_parameter_cover_every_element() -> None:
    param = torch.nn.Parameter(torch.arange(12, dtype=torch.float32).reshape(3, 4))
    stats = compute_stats(param.t())  # non-contiguous, requires grad
    assert stats.numel == 12
    assert stats.mean == pytest.approx(5.5)
    assert (stats.min, stats.max) == (0.0, 11.0)
    assert stats.zero_fraction == pytest.approx(1 / 12)


def test_nan_and_inf_are_counted_and_the_rest_is_described() -> None:
    stats = compute_stats(torch.tensor([1.0, NAN, INF, -INF, 3.0]))
    assert stats.numel == 5
    assert stats.nan_count == 1
    assert stats.inf_count == 2
    assert stats.mean == pytest.approx(2.0)
    assert stats.std == pytest.approx(math.sqrt(2))
    assert (stats.min, stats.max) == (1.0, 3.0)
    assert sum(stats.histogram) == 2


def test_all_nan_tensor_has_counts_but_no_values() -> None:
    stats = compute_stats(torch.full((3,), NAN))
    assert stats.nan_count == 3
    assert math.isnan(stats.mean)
    assert math.isnan(stats.min)
    assert stats.histogram == ()


def test_constant_tensor_has_zero_spread_and_one_bin() -> None:
    stats = compute_stats(torch.full((5,), 2.0))
    assert (stats.mean, stats.std, stats.min, stats.max) == (2.0, 0.0, 2.0, 2.0)
    assert stats.histogram == (5,)


def test_single_element_has_zero_std() -> None:
    stats = compute_stats(torch.tensor([7.0]))
    assert stats.std == 0.0
    assert stats.histogram == (1,)


@given(
    finite=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32),
        min_size=1,
        max_size=200,
    ),
    nans=st.integers(0, 5),
    infs=st.integers(0, 5),
)
@settings(max_examples=60, deadline=None, database=None)
def test_histogram_sums_to_the_number_of_finite_values(
    finite: list[float], nans: int, infs: int
) -> None:
    tensor = torch.tensor(finite + [NAN] * nans + [INF] * infs, dtype=torch.float32)
    stats = compute_stats(tensor)
    assert sum(stats.histogram) == len(finite)
    assert (stats.nan_count, stats.inf_count) == (nans, infs)
    assert (stats.min, stats.max) == (min(finite), max(finite))
    assert stats.zero_fraction == pytest.approx(finite.count(0.0) / len(tensor))


def test_histogram_of_values_spanning_the_float32_range() -> None:
    tensor = torch.tensor([-3e38, 0.0, 3e38], dtype=torch.float32)
    stats = compute_stats(tensor)
    assert (stats.min, stats.max) == pytest.approx((-3e38, 3e38))
    assert sum(stats.histogram) == 3


def test_histogram_of_float64_values_spanning_more_than_the_float64_range() -> None:
    tensor = torch.tensor([-1.7e308, 0.0, 1.7e308], dtype=torch.float64)
    stats = compute_stats(tensor)
    assert (stats.min, stats.max) == (-1.7e308, 1.7e308)
    assert stats.histogram[0] == stats.histogram[HISTOGRAM_BINS // 2] == stats.histogram[-1] == 1


@pytest.mark.parametrize("dtype", [torch.int8, torch.int32, torch.int64, torch.uint8])
def test_integer_tensor(dtype: torch.dtype) -> None:
    stats = compute_stats(torch.tensor([0, 1, 2, 3, 4, 0], dtype=dtype))
    assert stats.mean == pytest.approx(10 / 6)
    assert stats.std == pytest.approx(statistics.stdev([0, 1, 2, 3, 4, 0]), rel=1e-6)
    assert (stats.min, stats.max) == (0.0, 4.0)
    assert stats.zero_fraction == pytest.approx(2 / 6)
    assert (stats.nan_count, stats.inf_count) == (0, 0)
    assert sum(stats.histogram) == 6


def test_negative_integers() -> None:
    stats = compute_stats(torch.tensor([-5, 5, -1], dtype=torch.int16))
    assert (stats.min, stats.max) == (-5.0, 5.0)
    assert stats.mean == pytest.approx(-1 / 3)


def test_bool_tensor() -> None:
    stats = compute_stats(torch.tensor([True, False, True, True]))
    assert stats.mean == pytest.approx(0.75)
    assert stats.zero_fraction == pytest.approx(0.25)


def test_large_int64_values_keep_their_exact_min_and_max() -> None:
    stats = compute_stats(torch.tensor([16_777_217, 0, -16_777_219], dtype=torch.int64))
    assert stats.max == 16_777_217
    assert stats.min == -16_777_219


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensor(dtype: torch.dtype) -> None:
    values = [1.5, 2.5, -3.0, 0.0]  # exactly representable in both
    stats = compute_stats(torch.tensor(values, dtype=dtype))
    assert stats.mean == pytest.approx(statistics.mean(values))
    assert stats.std == pytest.approx(statistics.stdev(values), rel=1e-6)
    assert (stats.min, stats.max) == (-3.0, 2.5)
    assert stats.zero_fraction == pytest.approx(0.25)
    assert sum(stats.histogram) == 4


def test_float16_overflow_counts_as_inf() -> None:
    stats = compute_stats(torch.tensor([1.0, 70000.0, -70000.0], dtype=torch.float16))
    assert stats.inf_count == 2
    assert (stats.min, stats.max) == (1.0, 1.0)


def test_float64_keeps_its_precision() -> None:
    values = [1.0, 1.0 + 1e-7, 1.0 + 2e-7]
    stats = compute_stats(torch.tensor(values, dtype=torch.float64))
    assert stats.std == pytest.approx(1e-7, rel=1e-6)
    assert stats.max - stats.min == pytest.approx(2e-7, rel=1e-6)


def test_empty_tensor_has_no_values() -> None:
    stats = compute_stats(torch.empty(0, 3))
    assert stats.numel == 0
    assert stats.histogram == ()
    assert math.isnan(stats.mean)


@pytest.mark.parametrize(
    ("tensor", "reason"),
    [
        (torch.empty(3, 4, device="meta"), "meta tensor: no data"),
        (torch.empty(0, device="meta"), "meta tensor: no data"),
        (torch.empty(0), "empty tensor"),
        (torch.empty(2, 0, 5), "empty tensor"),
        (torch.ones(2, dtype=torch.complex64), "complex tensor: statistics not supported"),
        (torch.eye(3).to_sparse(), "torch.sparse_coo tensor: statistics not supported"),
        (torch.ones(2), None),
        (torch.tensor(3.0), None),
        (torch.tensor([NAN]), None),
    ],
    ids=["meta", "empty-meta", "empty", "empty-2d", "complex", "sparse", "dense", "0d", "nan"],
)
def test_unavailable_reason(tensor: torch.Tensor, reason: str | None) -> None:
    assert unavailable_reason(tensor) == reason


@pytest.fixture(scope="module")
def big() -> torch.Tensor:
    """A million normally distributed values with mean 1 and standard deviation 2."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1000, 1000, generator=generator) * 2 + 1


def test_estimate_of_a_big_tensor_is_flagged_and_close(big: torch.Tensor) -> None:
    exact = compute_stats(big)
    estimate = estimate_stats(big)
    assert estimate.estimated
    assert not exact.estimated
    assert estimate.numel == exact.numel == 1_000_000
    assert estimate.mean == pytest.approx(exact.mean, abs=0.1)
    assert estimate.std == pytest.approx(exact.std, rel=0.05)
    assert exact.min <= estimate.min <= estimate.max <= exact.max
    assert sum(estimate.histogram) == SAMPLE_SIZE
    assert sum(exact.histogram) == 1_000_000


def test_estimate_of_a_transposed_tensor_samples_the_values_in_their_logical_order(
    big: torch.Tensor,
) -> None:
    transposed = big.t()
    assert not transposed.is_contiguous()
    assert estimate_stats(transposed) == estimate_stats(transposed.contiguous())
    assert estimate_stats(transposed) != estimate_stats(big)  # another sample, not a copy of it


def test_estimate_reads_across_the_columns_of_a_matrix() -> None:
    """Rows as long as the estimate's strata: evenly spaced reads would see the same columns."""
    columns = 4096
    tensor = torch.arange(columns, dtype=torch.float32).repeat(SAMPLE_SIZE // 16 * 4, 1)
    exact, estimate = compute_stats(tensor), estimate_stats(tensor)
    assert estimate.mean == pytest.approx(exact.mean, rel=0.1)
    assert estimate.std == pytest.approx(exact.std, rel=0.1)
    assert estimate.max > 0.9 * exact.max
    assert min(estimate.histogram) > 0  # every part of the range is seen


def test_estimate_counts_nan_in_the_sample() -> None:
    generator = torch.Generator().manual_seed(1)
    tensor = torch.randn(100_000, generator=generator)
    tensor[torch.rand(100_000, generator=generator) < 0.1] = NAN
    estimate = estimate_stats(tensor)
    assert estimate.estimated
    assert estimate.nan_count / SAMPLE_SIZE == pytest.approx(0.1, abs=0.03)
    assert estimate.mean == pytest.approx(0.0, abs=0.1)
    assert sum(estimate.histogram) == SAMPLE_SIZE - estimate.nan_count


def test_estimate_of_a_small_tensor_is_exact() -> None:
    tensor = torch.arange(SAMPLE_SIZE, dtype=torch.float32)
    estimate = estimate_stats(tensor)
    assert not estimate.estimated
    assert estimate == compute_stats(tensor)
    assert isinstance(estimate, TensorStats)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.int64])
def test_large_tensors_give_the_same_figures_slice_by_slice(
    monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    torch.manual_seed(0)
    values = (torch.randn(10_001) * 50).to(dtype)
    values[:30] = 0
    if dtype.is_floating_point:
        values[7], values[8], values[9] = float("nan"), float("inf"), float("-inf")
    whole = compute_stats(values)
    monkeypatch.setattr(stats, "CHUNK_ELEMENTS", 1000)
    sliced = compute_stats(values)
    assert sliced.histogram == whole.histogram
    assert (sliced.min, sliced.max, sliced.numel) == (whole.min, whole.max, whole.numel)
    assert (sliced.nan_count, sliced.inf_count) == (whole.nan_count, whole.inf_count)
    assert sliced.zero_fraction == whole.zero_fraction
    assert sliced.mean == pytest.approx(whole.mean, rel=1e-5, abs=1e-6)
    assert sliced.std == pytest.approx(whole.std, rel=1e-5)


def test_slice_by_slice_statistics_stop_when_no_longer_wanted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cursor left the node: the worker stops at the next slice instead of finishing."""
    monkeypatch.setattr(stats, "CHUNK_ELEMENTS", 1000)
    asked: list[int] = []

    def cancelled_after_three() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(stats.StatsCancelled):
        compute_stats(torch.randn(10_000), cancelled=cancelled_after_three)
    assert len(asked) == 4  # three slices done, stopped before the fourth
    assert compute_stats(torch.randn(10_000), cancelled=lambda: False).numel == 10_000


def test_the_estimate_gives_the_share_of_zeros_of_its_sample() -> None:
    half = torch.randn(4096, 1024)
    half[:, ::2] = 0.0  # every other column: each sampled run holds as many zeros as values
    estimate = stats.estimate_stats(half)
    assert estimate.estimated
    assert estimate.zero_fraction == pytest.approx(0.5, abs=0.05)
    assert stats.compute_stats(half).zero_fraction == pytest.approx(0.5, abs=1e-6)
