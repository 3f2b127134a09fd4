"""Replace, delete, insert and add on small models: placement, aliases, names, undo."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from modelbrowse.core.edits.base import EditError
from modelbrowse.core.edits.modules import AddModule, Delete, Insert, Replace, child_name_problem
from modelbrowse.core.edits.specs import SpecError
from tests.edit_support import children, small_net
from tests.fixtures.models import SharedNet

# --- replace, delete -----------------------------------------------------------------------------


def test_replace_keeps_dtype_and_device_and_is_trainable() -> None:
    """The new module takes the old one's placement; undo puts back the very same object."""
    net = small_net().double()
    net.requires_grad_(False)
    old = net[6]
    old_weight = old.get_parameter("weight").detach().clone()
    edit = Replace("6", "nn.Linear(16, 5)", seed=11)
    edit.apply(net)
    new = net[6]
    assert isinstance(new, nn.Linear) and new is not old and new is edit.new
    assert {p.dtype for p in new.parameters()} == {torch.float64}
    assert {p.device.type for p in new.parameters()} == {"cpu"}
    assert all(p.requires_grad for p in new.parameters())
    assert net(torch.zeros(2, 3, 8, 8, dtype=torch.float64)).shape == (2, 5)
    assert edit.as_code() == [
        "torch.manual_seed(11)",
        "model[6] = nn.Linear(16, 5).to(dtype=torch.float64)",
    ]
    edit.undo(net)
    assert net[6] is old
    assert torch.equal(net.get_parameter("6.weight"), old_weight)
    edit.apply(net)  # a redo puts back the same new module
    assert net[6] is new


def test_replace_a_module_without_tensors_takes_its_parents_placement() -> None:
    net = small_net().double()
    Replace("2", "nn.PReLU()").apply(net)
    assert net[2].weight.dtype == torch.float64


def test_replace_with_a_bad_spec_changes_nothing() -> None:
    net = small_net()
    old = net[6]
    with pytest.raises(SpecError, match=re.escape("'Bogus' is not a torch.nn module class")):
        Replace("6", "nn.Bogus()").apply(net)
    assert net[6] is old


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (Replace("", "nn.ReLU()"), "the root cannot be replaced: open another source instead"),
        (Replace("6.weight", "nn.ReLU()"), "6.weight is not a module"),
        (Delete(""), "the root cannot be deleted"),
    ],
)
def test_replace_refusals(edit: Replace, message: str) -> None:
    net = small_net()
    with pytest.raises(EditError, match=re.escape(message)):
        edit.apply(net)
    assert [type(m) for m in net] == [type(m) for m in small_net()]


def test_replacing_a_shared_module_replaces_every_alias() -> None:
    """Documented: the new module goes at the path and at every other path of the old one."""
    net = SharedNet()
    old = net.encoder
    edit = Replace("decoder.proj", "nn.Linear(8, 8)", seed=2)
    edit.apply(net)
    assert edit.aliases == ["encoder", "decoder.proj"]
    assert net.encoder is net.decoder.proj is edit.new
    assert edit.as_code()[1:] == [
        "model.encoder = nn.Linear(8, 8)",
        "model.decoder.proj = model.encoder",
    ]
    edit.undo(net)
    assert net.encoder is old and net.decoder.proj is old


def test_replacing_the_owner_of_a_tied_weight_unties_it_until_undo() -> None:
    net = SharedNet()
    embed_weight = net.embed.weight.detach().clone()
    edit = Replace("head", "nn.Linear(8, 10, bias=False)")
    edit.apply(net)
    assert net.head.weight is not net.embed.weight
    assert torch.equal(net.embed.weight, embed_weight)
    edit.undo(net)
    assert net.head.weight is net.embed.weight


def test_delete_puts_an_identity_there() -> None:
    net = small_net()
    old = net[6]
    edit = Delete("6")
    edit.apply(net)
    assert isinstance(net[6], nn.Identity)
    assert net(torch.zeros(2, 3, 8, 8)).shape == (2, 16)
    assert edit.as_code() == ["model[6] = nn.Identity()"]
    assert edit.describe() == "delete 6 (now nn.Identity())"
    edit.undo(net)
    assert net[6] is old


# --- insert, add ---------------------------------------------------------------------------------


def test_insert_into_a_sequential_renumbers_and_undo_restores() -> None:
    net = small_net()
    before = children(net)
    edit = Insert("", 6, "nn.Dropout(0.1)", seed=4)
    edit.apply(net)
    assert [n for n, _ in net.named_children()] == [str(i) for i in range(8)]
    assert isinstance(net[6], nn.Dropout) and net[7] is before[6][1]
    assert net(torch.zeros(2, 3, 8, 8)).shape == (2, 10)
    assert edit.as_code() == ["torch.manual_seed(4)", "model.insert(6, nn.Dropout(0.1))"]
    edit.undo(net)
    assert children(net) == before


def test_insert_into_a_module_list() -> None:
    model = nn.Module()
    model.layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)]).double()
    before = children(model.layers)
    edit = Insert("layers", 0, "nn.Linear(2, 2)")
    edit.apply(model)
    assert [n for n, _ in model.layers.named_children()] == ["0", "1", "2", "3"]
    assert [m for _, m in children(model.layers)[1:]] == [m for _, m in before]
    assert model.layers[0].weight.dtype == torch.float64
    Insert("layers", 4, "nn.ReLU()").apply(model)  # at the end
    assert isinstance(model.layers[4], nn.ReLU)
    model.layers.pop(4)
    edit.undo(model)
    assert children(model.layers) == before


@pytest.mark.parametrize(
    ("path", "index", "message"),
    [
        ("", 8, "index 8 is outside the root (0 to 7)"),
        ("", -1, "index -1 is outside"),
        ("4", 0, "4 is not an nn.Sequential or nn.ModuleList"),
        ("nothing", 0, "nothing is not an nn.Sequential or nn.ModuleList"),
    ],
)
def test_insert_refusals(path: str, index: int, message: str) -> None:
    net = small_net()
    with pytest.raises(EditError, match=re.escape(message)):
        Insert(path, index, "nn.ReLU()").apply(net)
    assert len(net) == 7


def test_insert_into_a_sequential_with_named_children_is_refused() -> None:
    net = SharedNet()
    message = "decoder has children not numbered 0 to 1: add a named module instead"
    with pytest.raises(EditError, match=re.escape(message)):
        Insert("decoder", 0, "nn.ReLU()").apply(net)
    numbered = nn.Sequential(nn.ReLU(), nn.ReLU())
    numbered.add_module("100", nn.Identity())  # a number, but not its place
    with pytest.raises(EditError, match=re.escape("the root has children not numbered 0 to 2")):
        Insert("", 0, "nn.ReLU()").apply(numbered)
    assert list(numbered._modules) == ["0", "1", "100"]


def test_add_module_then_undo_and_redo() -> None:
    net = SharedNet()
    before = children(net)
    edit = AddModule("decoder", "norm", "nn.LayerNorm(8)", seed=8)
    edit.apply(net)
    assert [n for n, _ in net.decoder.named_children()] == ["proj", "act", "norm"]
    assert edit.as_code() == [
        "torch.manual_seed(8)",
        "model.decoder.add_module('norm', nn.LayerNorm(8))",
    ]
    assert edit.describe() == "add nn.LayerNorm(8) as decoder.norm"
    edit.undo(net)
    assert not hasattr(net.decoder, "norm")
    assert children(net) == before
    edit.apply(net)
    assert net.decoder.norm is edit.new


@pytest.mark.parametrize(
    ("path", "name", "problem"),
    [
        ("", "extra", None),
        # what add_module accepts: any text without a dot
        ("", "1st", None),
        ("", "a-b", None),
        ("", "class", None),
        ("", "100", None),
        ("decoder", "0", None),
        ("", "", "type a name for the new child"),
        ("", "a.b", "'a.b' has a dot: a child's name cannot"),
        ("", "a\tb", "'a\\tb' has a control character"),
        ("", "embed", "the root already has a child named 'embed'"),
        ("", "scale", "the root already has an attribute named 'scale'"),  # a buffer
        ("", "mask", "the root already has an attribute named 'mask'"),  # a plain tensor
        ("", "forward", "the root already has an attribute named 'forward'"),
        ("decoder", "proj", "decoder already has a child named 'proj'"),
        ("encoder", "weight", "encoder already has an attribute named 'weight'"),
        ("encoder", "training", "encoder already has an attribute named 'training'"),
    ],
)
def test_child_name_problem(path: str, name: str, problem: str | None) -> None:
    net = SharedNet()
    parent = net.get_submodule(path)
    found = child_name_problem(parent, path, name)
    assert found == problem if problem is None else (found or "").startswith(problem)
    edit = AddModule(path, name, "nn.ReLU()")
    if problem is None:
        edit.apply(net)
        assert isinstance(getattr(parent, name), nn.ReLU)
        replayed = SharedNet()
        exec("\n".join(edit.as_code()), {"torch": torch, "nn": nn, "model": replayed})
        assert isinstance(replayed.get_submodule(f"{path}.{name}" if path else name), nn.ReLU)
    else:
        before = children(parent)
        with pytest.raises(EditError, match=re.escape(problem)):
            edit.apply(net)
        assert children(parent) == before


def test_add_module_under_a_tensor_is_refused() -> None:
    with pytest.raises(EditError, match=re.escape("encoder.weight is not a module")):
        AddModule("encoder.weight", "x", "nn.ReLU()").apply(SharedNet())


def test_a_replacement_takes_the_old_modules_train_or_eval_mode() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)).eval()
    Replace("1", "nn.Dropout(0.1)").apply(model)
    assert model[1].training is False
