"""Freezing BatchNorm running statistics: kept through `model.train()`, undone, replayed by code
and by the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from modelbrowse.core.edits.base import EditError
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.edits.registry import EDIT_TYPES
from modelbrowse.core.norm_stats import stats_frozen
from modelbrowse.core.recipe import load_edited, save_edited
from modelbrowse.core.sources.base import resolve_source
from tests.edit_support import small_net


def running_stats(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


def train_step(model: nn.Module) -> None:
    """One forward in training mode, as a training loop does after `model.train()`."""
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 3, 8, 8) * 3 + 1)


def test_frozen_stats_survive_model_train() -> None:
    net = small_net()
    before = running_stats(net)
    edit = SetTrainable("", trainable=False, norm_stats=True)
    edit.apply(net)
    train_step(net)
    after = running_stats(net)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not net[1].training  # put back in eval mode by the hook
    assert net[4].training  # other layers train as usual
    assert not any(p.requires_grad for p in net.parameters())


def test_affine_only_leaves_stats_updating() -> None:
    net = small_net()
    before = running_stats(net)
    SetTrainable("", trainable=False).apply(net)
    train_step(net)
    assert not torch.equal(before["1.running_mean"], net.get_buffer("1.running_mean"))


def test_undo_lets_stats_update_again() -> None:
    net = small_net()
    net.train()
    history = EditHistory(net)
    history.apply(SetTrainable("1", trainable=False, norm_stats=True))
    assert stats_frozen(net[1])
    history.undo()
    assert not stats_frozen(net[1]) and net[1].training
    before = running_stats(net)
    train_step(net)
    assert not torch.equal(before["1.running_mean"], net.get_buffer("1.running_mean"))
    assert all(p.requires_grad for p in net.parameters())


def test_unfreezing_releases_the_stats() -> None:
    net = small_net()
    history = EditHistory(net)
    history.apply(SetTrainable("", trainable=False, norm_stats=True))
    history.apply(SetTrainable("", trainable=True, norm_stats=True))
    assert not stats_frozen(net[1])
    before = running_stats(net)
    train_step(net)
    assert not torch.equal(before["1.running_mean"], net.get_buffer("1.running_mean"))
    history.undo()
    assert stats_frozen(net[1])


def test_the_code_does_the_same() -> None:
    net = small_net()
    history = EditHistory(net)
    history.apply(SetTrainable("", trainable=False, norm_stats=True))
    history.apply(SetTrainable("", trainable=True, norm_stats=True))
    history.apply(SetTrainable("1", trainable=False, norm_stats=True))
    fresh = small_net()
    exec(history.code(), {"model": fresh})
    assert stats_frozen(fresh[1]) and len(fresh[1]._forward_pre_hooks) == 1
    assert [p.requires_grad for p in fresh.parameters()] == [
        p.requires_grad for p in net.parameters()
    ]
    before = running_stats(fresh)
    train_step(fresh)
    assert torch.equal(before["1.running_mean"], fresh.get_buffer("1.running_mean"))


def test_a_tensor_or_a_subtree_without_batchnorm() -> None:
    net = small_net()
    with pytest.raises(EditError, match="running statistics belong to modules"):
        SetTrainable("1.weight", trainable=False, norm_stats=True).apply(net)
    edit = SetTrainable("4", trainable=False, norm_stats=True)
    edit.apply(net)  # a Linear: its parameters are frozen, nothing else to do
    assert not net[4].weight.requires_grad
    assert edit.as_code() == ["model[4].requires_grad_(False)"]


def test_recorded_only_when_chosen() -> None:
    assert "norm_stats" not in SetTrainable("a", trainable=False).to_dict()
    record = SetTrainable("a", trainable=False, norm_stats=True).to_dict()
    assert record == {"op": "set_trainable", "path": "a", "trainable": False, "norm_stats": True}
    fields = dict(record)
    assert EDIT_TYPES[fields.pop("op")](**fields) == SetTrainable("a", False, norm_stats=True)


def test_load_edited_keeps_the_stats(tmp_path: Path) -> None:
    source = resolve_source("resnet18")
    model = source.build_real(1)
    history = EditHistory(model)
    history.apply(SetTrainable("layer1", trainable=False, norm_stats=True))
    weights = tmp_path / "r18.safetensors"
    save_edited(model, weights, source, 1, list(history.done))
    recipe = json.loads((tmp_path / "r18.safetensors.recipe.json").read_text())
    assert recipe["edits"][0]["norm_stats"] is True

    loaded = load_edited(weights)
    bn = loaded.get_submodule("layer1.0.bn1")
    other = loaded.get_submodule("layer2.0.bn1")
    assert stats_frozen(bn) and not stats_frozen(other)
    loaded.train()
    before = (bn.get_buffer("running_mean").clone(), other.get_buffer("running_mean").clone())
    with torch.no_grad():
        loaded(torch.randn(2, 3, 64, 64))
    assert torch.equal(bn.get_buffer("running_mean"), before[0])
    assert not torch.equal(other.get_buffer("running_mean"), before[1])
    assert not loaded.get_parameter("layer1.0.conv1.weight").requires_grad


def test_resnet_freeze_counts_every_batchnorm() -> None:
    model = torchvision.models.resnet18()
    SetTrainable("", trainable=False, norm_stats=True).apply(model)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 20 and all(stats_frozen(m) for m in norms)
