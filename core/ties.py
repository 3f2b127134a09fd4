"""Tied tensors: one parameter under several names, found and put back together after a load."""

from __future__ import annotations

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
    """`assign=True` gives each name its own tensor; put the shared ones back together."""
    for first, *others in groups:
        owner_path, _, attr = first.rpartition(".")
        tensor = getattr(model.get_submodule(owner_path), attr)
        for other in others:
            other_path, _, other_attr = other.rpartition(".")
            setattr(model.get_submodule(other_path), other_attr, tensor)
