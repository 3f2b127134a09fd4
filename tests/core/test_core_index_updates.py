"""After an edit or its undo, the index updated in place equals one built afresh."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from modelbrowse.core import index as index_module
from modelbrowse.core.edits.base import Edit
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.modules import AddModule, Delete, Insert, Replace
from modelbrowse.core.edits.reinit import Reinit
from modelbrowse.core.edits.weights import DeleteKeys
from modelbrowse.core.index import NodeIndex
from tests.fixtures.models import SharedNet, WideList


def snapshot(index: NodeIndex) -> dict[str, object]:
    """Everything a widget reads: paths in tree order, kinds, children, aliases, totals."""
    return {
        path: (
            index.node(path).kind,
            index.node(path).type_name,
            index.node(path).depth,
            list(index.node(path).children),
            index.aliases(path),
            index.totals(path),
        )
        for path in index.paths()
    }


def assert_same_as_fresh(index: NodeIndex) -> None:
    fresh = snapshot(NodeIndex(index.model))
    updated = snapshot(index)
    assert list(updated) == list(fresh)  # tree order
    for path, expected in fresh.items():
        assert updated[path] == expected, path
    assert_parameters_as_torch_lists_them(index)


def assert_parameters_as_torch_lists_them(index: NodeIndex) -> None:
    """`index.parameters(path)` holds what `module.parameters()` does, for every module."""
    for module in index.modules():
        expected = sorted(id(p) for p in module.obj.parameters())
        assert sorted(id(p) for p in index.parameters(module.path)) == expected, module.path


def blocks() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4)),
        nn.BatchNorm1d(4),
        nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)),
    )


EDITS: dict[str, tuple[Callable[[], nn.Module], Callable[[], Edit]]] = {
    "freeze the root": (blocks, lambda: SetTrainable("", trainable=False)),
    "freeze a block": (blocks, lambda: SetTrainable("0", trainable=False)),
    "freeze, flags known alike": (blocks, lambda: SetTrainable("", False, all_were=True)),
    "freeze one parameter": (blocks, lambda: SetTrainable("2.1.weight", trainable=False)),
    "re-initialise a block": (blocks, lambda: Reinit("0")),
    "replace a leaf": (blocks, lambda: Replace("0.2", "nn.Linear(8, 4, bias=False)")),
    "replace a block": (blocks, lambda: Replace("2", "nn.Conv1d(4, 4, 1)")),
    "delete a leaf": (blocks, lambda: Delete("1")),
    "insert into a list": (blocks, lambda: Insert("0", 1, "nn.Dropout()")),
    "add a module": (blocks, lambda: AddModule("2", "extra", "nn.Linear(4, 2)")),
    "delete a key": (blocks, lambda: DeleteKeys("0.0.bias")),
    "delete a key prefix": (blocks, lambda: DeleteKeys("2")),
    "freeze a shared module": (SharedNet, lambda: SetTrainable("encoder", trainable=False)),
    "freeze a tied weight": (SharedNet, lambda: SetTrainable("head", trainable=False)),
    "replace a shared module": (SharedNet, lambda: Replace("decoder.proj", "nn.Linear(8, 8)")),
    "replace beside a tie": (SharedNet, lambda: Replace("head", "nn.Linear(8, 10)")),
    "delete a tied key": (SharedNet, lambda: DeleteKeys("embed.weight")),
    "insert into a long list": (lambda: WideList(120), lambda: Insert("layers", 0, "nn.ReLU()")),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_an_edit_and_its_undo_update_the_index_in_place(name: str) -> None:
    build, make_edit = EDITS[name]
    model = build()
    index = NodeIndex(model)
    edit = make_edit()
    edit.apply(model)
    edit.update_index(index)
    assert_same_as_fresh(index)
    edit.undo(model)
    edit.update_index(index)
    assert_same_as_fresh(index)
    edit.apply(model)  # redo
    edit.update_index(index)
    assert_same_as_fresh(index)


@pytest.mark.parametrize("scan_above", [0, 10_000])
@pytest.mark.parametrize("build", [SharedNet, blocks])
def test_parameters_of_a_subtree_by_walking_or_by_scanning(
    build: Callable[[], nn.Module], scan_above: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "_SCAN_ABOVE", scan_above)
    assert_parameters_as_torch_lists_them(NodeIndex(build()))


def test_freezing_with_the_index_parameters_matches_walking_the_model() -> None:
    walked, given = SharedNet(), SharedNet()
    index = NodeIndex(given)
    for model, edit in (
        (walked, SetTrainable("decoder", trainable=False)),
        (given, SetTrainable("decoder", False, parameters=index.parameters("decoder"))),
    ):
        edit.apply(model)
        edit.update_index(index if model is given else NodeIndex(model))
    assert [p.requires_grad for p in walked.parameters()] == [True, False, False]
    assert [p.requires_grad for p in given.parameters()] == [True, False, False]
    assert index.totals().frozen == 8 * 8 + 8


def test_freezing_a_partly_frozen_model_and_undoing_it_restores_partial_counts() -> None:
    model = blocks()
    model.get_parameter("0.0.bias").requires_grad_(False)
    index = NodeIndex(model)
    edit = SetTrainable("0", trainable=False)
    edit.apply(model)
    edit.update_index(index)
    assert index.totals("0").trainable == 0
    edit.undo(model)
    edit.update_index(index)
    assert index.totals("0").frozen == 8  # the bias frozen before stays frozen
    assert_same_as_fresh(index)


def test_a_sequence_of_edits_keeps_the_index_exact() -> None:
    model = SharedNet()
    index = NodeIndex(model)
    edits: list[Edit] = [
        SetTrainable("", trainable=False),
        Replace("decoder.act", "nn.GELU()"),
        AddModule("decoder", "norm", "nn.LayerNorm(8)"),
        SetTrainable("decoder", trainable=True),
        Delete("head"),
    ]
    for edit in edits:
        edit.apply(model)
        edit.update_index(index)
        assert_same_as_fresh(index)
    for edit in reversed(edits):
        edit.undo(model)
        edit.update_index(index)
        assert_same_as_fresh(index)
