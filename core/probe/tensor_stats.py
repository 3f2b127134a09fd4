"""The statistics of one activation, computed where it lives (CPU or GPU) and returned as plain
numbers: the probe's hooks call this and let the tensor go."""

from __future__ import annotations

import math

import torch
from torch import nn

from modelbrowse.core.probe.result import OutputStats
from modelbrowse.core.stats import HISTOGRAM_BINS

# The histogram counts at most this many values of a tensor, evenly spaced through it: the
# shape of the distribution at a fifth of the cost of counting all of a large activation.
HISTOGRAM_VALUES = 1 << 20

# Modules whose outputs have dead units: a unit (channel) never positive over the whole batch
# passes no signal (ReLU, ReLU6, Threshold) or almost none (the smooth and leaky ones).
RELU_FAMILY: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Threshold,
)

# Layers whose outputs are channels-first (N, C, ...): an activation after them has its
# channels in dim 1. After anything else (Linear, LayerNorm, Embedding) they are the last dim.
CHANNELS_FIRST: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
)


def channel_dim(ndim: int, previous: nn.Module | None) -> int:
    """Where the channels of an activation's output are, given the last layer with
    parameters that ran before it: dim 1 after a convolution or a batch, instance or group
    norm (and when nothing ran before), else the last dim ((batch, seq, hidden) after a
    Linear, channels-last layouts). A 1-D output is one sample: each value is a unit."""
    if ndim <= 1:
        return 0
    if previous is None or isinstance(previous, CHANNELS_FIRST):
        return 1
    return ndim - 1


def tensor_stats(tensor: torch.Tensor, order: int, dead_dim: int | None = None) -> OutputStats:
    """Mean, std, absolute max, zeros, NaN and Inf counts and a histogram of the finite values
    of `tensor`; with `dead_dim`, the share of channels along it never positive. Std is the
    population's (no correction); complex values count by their magnitude. The histogram of a
    tensor of more than HISTOGRAM_VALUES values counts that many, evenly spaced through it
    (its range is the whole tensor's)."""
    with torch.no_grad():
        x = tensor.detach()
        shape, dtype = tuple(x.shape), str(x.dtype).removeprefix("torch.")
        if x.is_complex():
            x = x.abs()
        if x.dtype != torch.float64:
            x = x.float()
        numel = x.numel()
        nan = math.nan
        if numel == 0:
            return OutputStats(shape, dtype, order, nan, nan, nan, 0.0, None, 0, 0, (), nan, nan)
        # The cheap passes first (a sum, the extremes, the nonzeros): a clean tensor, the
        # common case, needs no masks.
        low_high = torch.aminmax(x)
        first = torch.stack([x.sum(), low_high.min, low_high.max, torch.count_nonzero(x)])
        total, low, high, nonzero = first.tolist()
        zero_share = (numel - int(nonzero)) / numel
        if math.isfinite(total) and math.isfinite(low) and math.isfinite(high):
            nan_count = inf_count = 0
            finite = x.reshape(-1)
            dead = dead_share(x, dead_dim, clean=True) if dead_dim is not None else None
        else:
            nan_count, inf_count, finite = _non_finite(x)
            dead = dead_share(x, dead_dim, clean=False) if dead_dim is not None else None
            if finite.numel() == 0:
                return OutputStats(
                    shape, dtype, order, nan, nan, nan, zero_share, dead, nan_count, inf_count,
                    (), nan, nan,
                )  # fmt: skip
            extremes = torch.aminmax(finite)
            total, low, high = torch.stack([finite.sum(), extremes.min, extremes.max]).tolist()
        mean = total / finite.numel()
        std = float(finite.std(correction=0)) if finite.numel() > 1 else 0.0
        return OutputStats(
            shape,
            dtype,
            order,
            mean,
            std,
            max(abs(low), abs(high)),
            zero_share,
            dead,
            nan_count,
            inf_count,
            _histogram(finite, low, high),
            low,
            high,
        )


def _non_finite(x: torch.Tensor) -> tuple[int, int, torch.Tensor]:
    """How many NaN and Inf `x` holds, and its finite values (flat)."""
    counts = torch.stack([torch.isnan(x).sum(), torch.isinf(x).sum()]).tolist()
    return int(counts[0]), int(counts[1]), x[torch.isfinite(x)]


def _histogram(finite: torch.Tensor, low: float, high: float) -> tuple[int, ...]:
    if low == high:
        return (finite.numel(),)
    step = -(-finite.numel() // HISTOGRAM_VALUES)
    counted = torch.histc(finite[::step], bins=HISTOGRAM_BINS, min=low, max=high)
    return tuple(int(c) for c in counted.tolist())


def dead_share(x: torch.Tensor, dim: int, clean: bool = False) -> float | None:
    """The share of slices along `dim` where no value is positive (NaN is not positive);
    `clean`: `x` holds no NaN, so each slice's maximum tells."""
    if x.ndim == 0 or x.shape[dim] == 0:
        return None
    if clean:  # no NaN: the largest value of each channel says it
        others = [d for d in range(x.ndim) if d != dim % x.ndim]
        alive = x.amax(dim=others) > 0 if others else x > 0
    else:
        alive = (x > 0).movedim(dim, 0).reshape(x.shape[dim], -1).any(dim=1)
    return 1.0 - float(alive.float().mean())
