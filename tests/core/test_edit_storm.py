"""A thousand random edits, then undo to the start: the model is what it was, bit for bit."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
import torchvision
from torch import nn

from modelbrowse.core.edits.base import Edit
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.edits.modules import AddModule, Delete, Insert, Replace
from modelbrowse.core.edits.reinit import SCHEME_NAMES, Reinit
from modelbrowse.core.errors import ModelBrowseError
from tests.edit_support import assert_state, flags, state
from tests.fixtures.models import SharedNet

EDITS = 1_000
SPECS = ["nn.Identity()", "nn.ReLU()", "nn.Dropout(0.1)", "nn.Linear(8, 8)", "nn.LayerNorm(8)"]


def shared_ids(model: nn.Module) -> list[tuple[str, ...]]:
    """Groups of paths that hold the same object (shared modules, tied parameters)."""
    groups: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        groups.setdefault(id(module), []).append(name)
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return sorted(tuple(g) for g in groups.values() if len(g) > 1)


def modes(model: nn.Module) -> list[tuple[str, bool, int]]:
    """Each module's training flag and how many forward pre-hooks it has."""
    return [
        (name, module.training, len(module._forward_pre_hooks))
        for name, module in model.named_modules(remove_duplicate=False)
    ]


def random_edit(model: nn.Module, rng: random.Random, number: int) -> Edit:
    modules = [name for name, _ in model.named_modules(remove_duplicate=False)]
    leaves = [n for n, m in model.named_modules(remove_duplicate=False) if not list(m.children())]
    tensors = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    containers = [
        n
        for n, m in model.named_modules(remove_duplicate=False)
        if isinstance(m, (nn.Sequential, nn.ModuleList))
    ]
    kind = rng.randrange(6)
    if kind == 0:
        path = rng.choice(modules + tensors)
        norm_stats = path in modules and rng.random() < 0.5  # BatchNorm running statistics too
        return SetTrainable(path, rng.random() < 0.5, norm_stats=norm_stats)
    if kind == 1:
        path = rng.choice(leaves + tensors)  # not whole stages: a thousand edits stay quick
        return Reinit(path, rng.choice(SCHEME_NAMES), seed=rng.randrange(2**31))
    if kind == 2:
        return Replace(rng.choice(modules[1:]), rng.choice(SPECS))
    if kind == 3:
        return Delete(rng.choice(modules[1:]))
    if kind == 4 and containers:
        path = rng.choice(containers)
        size = len(model.get_submodule(path)) if path else len(model)  # type: ignore[arg-type]
        return Insert(path, rng.randint(0, size), rng.choice(SPECS), seed=rng.randrange(2**31))
    return AddModule(rng.choice(modules), f"extra{number}", rng.choice(SPECS))


@pytest.mark.parametrize(
    "make", [torchvision.models.resnet18, SharedNet], ids=["resnet18", "shared-and-tied"]
)
def test_a_thousand_random_edits_undone_give_back_the_model_bit_for_bit(
    make: Callable[[], nn.Module],
) -> None:
    model = make()
    before, before_flags, before_shared = state(model), flags(model), shared_ids(model)
    before_modes = modes(model)
    history = EditHistory(model)
    rng = random.Random(f"storm-{make.__name__}")
    applied = refused = undone = 0
    for number in range(EDITS):
        if history.done and rng.random() < 0.2:
            history.undo()
            undone += 1
            continue
        try:
            history.apply(random_edit(model, rng, number))
            applied += 1
        except ModelBrowseError:
            refused += 1  # a refused edit leaves the model as it was, and nothing recorded
    assert applied > EDITS // 2 and undone > 50
    while history.undo() is not None:
        pass
    assert_state(model, before)
    assert flags(model) == before_flags
    assert shared_ids(model) == before_shared
    assert modes(model) == before_modes
    if isinstance(model, SharedNet):
        assert model.encoder is model.decoder.proj
        assert model.head.weight is model.embed.weight
