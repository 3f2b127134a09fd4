"""Small models and state snapshots shared by the core edit tests."""

from __future__ import annotations

import torch
from torch import nn

State = dict[str, torch.Tensor]


def small_net() -> nn.Sequential:
    """Conv, BatchNorm (with running stats moved off their defaults), LayerNorm, Linears."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 16),
        nn.LayerNorm(16),
        nn.Linear(16, 10),
    )
    with torch.no_grad():
        net(torch.randn(2, 3, 8, 8))
        net.get_parameter("5.weight").normal_()
        net.get_parameter("5.bias").normal_()
    return net


def state(model: nn.Module) -> State:
    """A copy of the state_dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def flags(model: nn.Module) -> dict[str, bool]:
    """requires_grad of every parameter, under every path it has."""
    return {n: p.requires_grad for n, p in model.named_parameters(remove_duplicate=False)}


def assert_state(model: nn.Module, expected: State) -> None:
    """The same keys, dtypes and values (bit for bit)."""
    current = model.state_dict()
    assert current.keys() == expected.keys()
    for key, tensor in expected.items():
        assert current[key].dtype == tensor.dtype, key
        assert torch.equal(current[key], tensor), key


def children(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return list(module.named_children())
