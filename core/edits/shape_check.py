"""The shape check: a forward pass on the `meta` device (no memory, no compute) after an edit."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modelbrowse.core.arguments import InputShape


@dataclass(frozen=True)
class ShapeCheck:
    """`ok` is True (runs), False (an edit broke it) or None (the check cannot run here)."""

    ok: bool | None
    message: str


def meta_copy(model: nn.Module) -> nn.Module:
    """A copy of the model's structure with every tensor on `meta`; no tensor data is copied."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for tensor in (*module._parameters.values(), *module._buffers.values()):
            if tensor is None or id(tensor) in memo:
                continue
            meta = tensor.detach().to("meta")
            if isinstance(tensor, nn.Parameter):
                meta = nn.Parameter(meta, requires_grad=tensor.requires_grad)
            memo[id(tensor)] = meta
        for value in vars(module).values():
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                memo[id(value)] = value.detach().to("meta")
    return copy.deepcopy(model, memo)


def describe_output(output: Any) -> str:
    """(1, 10) for a tensor; the shapes inside a tuple, list or dict."""
    if isinstance(output, torch.Tensor):
        return "(" + ", ".join(str(d) for d in output.shape) + ")"
    if isinstance(output, dict):
        return "{" + ", ".join(f"{k}: {describe_output(v)}" for k, v in output.items()) + "}"
    if isinstance(output, (tuple, list)):
        return "[" + ", ".join(describe_output(v) for v in output) + "]"
    return type(output).__name__


def _mismatch(module: nn.Module, inputs: tuple[Any, ...]) -> str | None:
    """A plain-words reason when a common layer gets an input of the wrong size."""
    first = inputs[0] if inputs else None
    if not isinstance(first, torch.Tensor) or first.dim() == 0:
        return None
    if isinstance(module, nn.Linear) and first.shape[-1] != module.in_features:
        return f"expected {module.in_features} input features, got {first.shape[-1]}"
    if isinstance(module, nn.modules.conv._ConvNd) and first.dim() >= 2:
        channels = first.shape[1] if first.dim() == len(module.kernel_size) + 2 else first.shape[0]
        if channels != module.in_channels:
            return f"expected {module.in_channels} input channels, got {channels}"
    batch_norm = isinstance(module, nn.modules.batchnorm._BatchNorm) and first.dim() >= 2
    if batch_norm and first.shape[1] != module.num_features:
        return f"expected {module.num_features} features, got {first.shape[1]}"
    return None


def _cannot_run_here(module: nn.Module, inputs: tuple[Any, ...], exc: BaseException) -> bool:
    """True for errors of the check, not of the model's shapes.

    Meta tensors have no data (`.item()`, data-dependent shapes, numpy) and some ops have no meta
    kernel; and the check's float inputs are no token ids for an embedding.
    """
    if "meta" in str(exc).lower():
        return True
    first = inputs[0] if inputs else None
    return (
        isinstance(module, (nn.Embedding, nn.EmbeddingBag))
        and isinstance(first, torch.Tensor)
        and first.dtype not in (torch.int32, torch.int64)
    )


def _hooks(model: nn.Module, active: list[tuple[str, nn.Module, tuple[Any, ...]]]) -> Iterator[Any]:
    for path, module in model.named_modules():

        def enter(mod: nn.Module, args: tuple[Any, ...], path: str = path) -> None:
            active.append((path, mod, args))

        def leave(mod: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if active:
                active.pop()

        yield module.register_forward_pre_hook(enter)
        yield module.register_forward_hook(leave)


def check_shapes(
    model: nn.Module, input_shape: InputShape, dtypes: Sequence[str] | None = None
) -> ShapeCheck:
    """Run the model on meta inputs of `input_shape` and `dtypes` (torch's names; float32 by
    default); name the first module that no longer fits."""
    try:
        probe = meta_copy(model)
    except Exception as exc:  # deepcopy of arbitrary user modules can fail
        return ShapeCheck(None, f"shape check unavailable: cannot copy the model ({exc})")
    probe.eval()
    active: list[tuple[str, nn.Module, tuple[Any, ...]]] = []
    handles = list(_hooks(probe, active))
    names = list(dtypes) if dtypes is not None else ["float32"] * len(input_shape)
    inputs = [
        torch.empty(shape, dtype=getattr(torch, name), device="meta")
        for shape, name in zip(input_shape, names, strict=True)
    ]
    try:
        with torch.no_grad():
            output = probe(*inputs)
    except Exception as exc:
        if not active:
            return ShapeCheck(None, f"shape check unavailable: {_first_line(exc)}")
        path, module, args = active[-1]
        reason = _mismatch(module, args)
        if reason is None and _cannot_run_here(module, args, exc):
            return ShapeCheck(None, f"shape check unavailable: {_first_line(exc)}")
        return ShapeCheck(False, f"{path or type(module).__name__}: {reason or _first_line(exc)}")
    finally:
        for handle in handles:
            handle.remove()
    return ShapeCheck(True, f"output {describe_output(output)}")


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
