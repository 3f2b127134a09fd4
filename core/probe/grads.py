"""The backward half of a probe: the loss, and each parameter's gradient as two numbers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from modelbrowse.core.probe.result import GradStats, ProbeError

SUM_LOSS = "sum of the output"
CROSS_ENTROPY = "cross-entropy against the target"


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def loss_of(output: torch.Tensor | None, target: torch.Tensor | None) -> tuple[torch.Tensor, str]:
    """The loss to take gradients of, and what it is: the sum of `output` (in float32), or
    cross-entropy against `target`. A target of class indices (integers) goes with logits of
    one more dim (N, C) or (N, T, C) (the classes last for three dims and more, as language
    models give them); a float target of the output's shape holds class probabilities."""
    if output is None:
        raise ProbeError("the model's output holds no tensor to take a loss of")
    if not output.is_floating_point():
        raise ProbeError(f"the model's output is {output.dtype}: no gradient flows to integers")
    if not output.requires_grad:
        raise ProbeError("the model's output does not depend on any trainable parameter")
    if target is None:
        return output.float().sum(), SUM_LOSS
    target = target.to(output.device)
    logits = output.float()
    try:
        if target.is_floating_point():
            if target.shape != output.shape:
                raise ProbeError(
                    f"a float target holds probabilities of the output's shape "
                    f"{_shape(output)}, not {_shape(target)}"
                )
            if logits.ndim > 2:  # the classes last, as for the integer targets
                logits, target = (
                    logits.reshape(-1, logits.shape[-1]),
                    target.reshape(-1, target.shape[-1]),
                )
            return F.cross_entropy(logits, target.float()), CROSS_ENTROPY
        if logits.ndim > 2 and target.shape == logits.shape[:-1]:  # (N, T, C): classes last
            logits, target = logits.reshape(-1, logits.shape[-1]), target.reshape(-1)
        elif target.shape != logits.shape[:1] + logits.shape[2:]:  # (N, C, ...): torch's way
            raise ProbeError(
                f"the target's shape {_shape(target)} does not fit the output's {_shape(output)} "
                "(class indices: the output's shape without its class dim)"
            )
        return F.cross_entropy(logits, target.long()), CROSS_ENTROPY
    except (RuntimeError, IndexError, ValueError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProbeError(f"cross-entropy failed: {text}") from exc


def take_grads(model: nn.Module) -> tuple[dict[str, GradStats], tuple[str, ...]]:
    """Each trainable parameter's gradient norm and its ratio to the weight's norm, under every
    name it has; and the trainable parameters (their first names) that got no gradient."""
    names: dict[nn.Parameter, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(p, []).append(name)
    grads: dict[str, GradStats] = {}
    missing: list[str] = []
    with torch.no_grad():
        for p, aliases in names.items():
            if not p.requires_grad:
                continue
            if p.grad is None:
                missing.append(aliases[0])
                continue
            norm, weight = (
                float(v)
                for v in torch.stack([p.grad.float().norm(), p.detach().float().norm()]).tolist()
            )
            # A weight of norm 0 with a gradient has an infinite ratio; without one, 0.
            if weight > 0 or math.isnan(weight):
                ratio = norm / weight
            else:
                ratio = 0.0 if norm == 0 else math.inf
            stats = GradStats(norm, ratio, weight)
            for alias in aliases:
                grads[alias] = stats
    return grads, tuple(missing)
