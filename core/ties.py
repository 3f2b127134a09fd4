"""Tied tensors: one parameter under several names, found and put back together after a load."""

from __future__ import annotations

import torch
from torch import nn


def tied_groups(model: nn.Module) -> list[list[str]]:
    """Names of parameters and buffers that are one object under several names."""
    by_id: dict[int, list[str]] = {}
    for name, tensor in [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]:
        by_id.setdefault(id(tensor), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


def restore_ties(model: nn.Module, groups: list[list[str]]) -> None:
    """`assign=True` gives each name its own tensor; put the shared ones back together (around
    the one that holds data, when only one name of a tie was loaded)."""
    for group in groups:
        tensors = [_tensor_at(model, name) for name in group]
        source = next((i for i, t in enumerate(tensors) if not t.is_meta), 0)
        tensor = tensors[source]
        for other in group[:source] + group[source + 1 :]:
            other_path, _, other_attr = other.rpartition(".")
            setattr(model.get_submodule(other_path), other_attr, tensor)


def _tensor_at(model: nn.Module, name: str) -> torch.Tensor:
    owner_path, _, attr = name.rpartition(".")
    tensor: torch.Tensor = getattr(model.get_submodule(owner_path), attr)
    return tensor
