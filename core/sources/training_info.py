"""The rest of a training checkpoint (epoch, metrics, optimizer state), as rows of text."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from modelbrowse.core.reading.pickles import Global
from modelbrowse.core.sources.key_rules import is_optimizer_state, short


def describe_extras(rest: Mapping[Any, Any]) -> list[tuple[str, str]]:
    """Epoch, metrics, optimizer and the like: one (label, text) row each."""
    rows: list[tuple[str, str]] = []
    for key, value in rest.items():
        label = str(key)
        if is_optimizer_state(value):
            rows.append((label, describe_optimizer(value)))
        elif isinstance(value, (list, tuple)) and value and all(map(is_optimizer_state, value)):
            rows.append((label, "; ".join(describe_optimizer(v) for v in value)))
        elif isinstance(value, torch.Tensor):
            rows.append((label, _tensor_value(value)))
        elif isinstance(value, Mapping):
            scalars = [(k, v) for k, v in value.items() if _is_scalar(v)]
            if scalars and len(scalars) == len(value):
                rows.append((label, short(", ".join(f"{k}={_scalar(v)}" for k, v in scalars))))
            else:
                rows.append((label, f"dict of {len(value)} entries"))
        elif _is_scalar(value):
            rows.append((label, _scalar(value)))
        elif isinstance(value, (list, tuple)):
            rows.append((label, f"{type(value).__name__} of {len(value)} items"))
        else:
            rows.append((label, type(value).__name__))
    return rows


def describe_optimizer(state: Mapping[str, Any]) -> str:
    """'AdamW, 2 parameter groups, lr 0.001' from an optimizer's state_dict."""
    groups = state.get("param_groups") or []
    first = groups[0] if groups and isinstance(groups[0], Mapping) else {}
    name = guess_optimizer(first)
    count = len(groups)
    text = f"{name} optimizer state, {count} parameter group{'s' if count != 1 else ''}"
    if "lr" in first and _is_scalar(first["lr"]):
        text += f", lr {_scalar(first['lr'])}"
    return text


def guess_optimizer(group: Mapping[str, Any]) -> str:
    """The optimizer class, told from the options in a parameter group."""
    keys = set(group)
    if {"betas", "amsgrad"} <= keys:
        return "AdamW" if group.get("decoupled_weight_decay") else "Adam"
    if {"momentum", "dampening", "nesterov"} <= keys:
        return "SGD"
    for name, options in (
        ("RMSprop", {"alpha", "centered"}),
        ("Adagrad", {"lr_decay", "initial_accumulator_value"}),
        ("Adadelta", {"rho"}),
        ("LBFGS", {"history_size"}),
    ):
        if options <= keys:
            return name
    return "an"


def _is_scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_meta
    # A name the file gives as a value (`torch.float32`), read without importing it.
    return isinstance(value, (int, float, str, bool, Global, torch.dtype)) or value is None


def _scalar(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, Global):
        return short(value.dotted)
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return short(str(value))


def _tensor_value(tensor: torch.Tensor) -> str:
    if _is_scalar(tensor):
        return _scalar(tensor)
    return f"tensor {tuple(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"
