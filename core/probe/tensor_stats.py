"""The statistics of one activation, computed where it lives (CPU or GPU) and returned as plain
numbers: the probe's hooks call this and let the tensor go."""

from __future__ import annotations

import math

import torch
from torch import nn

from modelbrowse.core.probe.result import OutputStats
from modelbrowse.core.stats import HISTOGRAM_BINS

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
    population's (no correction); complex values count by their magnitude."""
    with torch.no_grad():
        x = tensor.detach()
        shape, dtype = tuple(x.shape), str(x.dtype).removeprefix("torch.")
        if x.is_complex():
            x = x.abs()
        dead = _dead_share(x, dead_dim) if dead_dim is not None else None
        if x.dtype != torch.float64:
            x = x.float()
        x = x.reshape(-1)
        numel = x.numel()
        if numel == 0:
            nan = math.nan
            return OutputStats(shape, dtype, order, nan, nan, nan, 0.0, dead, 0, 0, (), nan, nan)
        nans = torch.isnan(x).sum()
        infs = torch.isinf(x).sum()
        zeros = (x == 0).sum()
        counts = torch.stack([nans, infs, zeros]).tolist()  # one device sync for the three
        nan_count, inf_count, zero_count = (int(c) for c in counts)
        finite = x if nan_count + inf_count == 0 else x[torch.isfinite(x)]
        zero_share = zero_count / numel
        if finite.numel() == 0:
            nan = math.nan
            return OutputStats(
                shape, dtype, order, nan, nan, nan, zero_share, dead, nan_count, inf_count, (),
                nan, nan,
            )  # fmt: skip
        moments = torch.stack(
            [finite.mean(), finite.std(correction=0), finite.min(), finite.max()]
        ).tolist()
        mean, std, low, high = (float(v) for v in moments)
        if low == high:
            histogram: tuple[int, ...] = (finite.numel(),)
        else:
            counted = torch.histc(finite, bins=HISTOGRAM_BINS, min=low, max=high)
            histogram = tuple(int(c) for c in counted.tolist())
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
            histogram,
            low,
            high,
        )


def _dead_share(x: torch.Tensor, dim: int) -> float | None:
    """The share of slices along `dim` where no value is positive (NaN is not positive)."""
    if x.ndim == 0 or x.shape[dim] == 0:
        return None
    positive = (x > 0).movedim(dim, 0).reshape(x.shape[dim], -1).any(dim=1)
    return 1.0 - float(positive.float().mean())
