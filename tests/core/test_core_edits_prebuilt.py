"""An edit's new module built beforehand (as the app does in a worker): the same bytes as a
build on apply, placed as its predecessor, one per part of a batch, undone and redone."""

from __future__ import annotations

import threading

import torch
from torch import nn

from modelbrowse.core.edits.base import Edit, build_seeded, seeded
from modelbrowse.core.edits.batch import Batch
from modelbrowse.core.edits.modules import AddModule, Delete, Insert, Replace, to_build
from modelbrowse.core.edits.reinit import Reinit
from tests.edit_support import small_net


def built_then_applied(edit: Edit, net: nn.Module) -> None:
    for new in to_build(edit, net):
        new.attach(new.build())
    assert not to_build(edit, net)  # nothing is left to build when applied
    edit.apply(net)


def test_a_prebuilt_replace_has_the_bytes_of_one_built_on_apply() -> None:
    net, same = small_net().double().eval(), small_net().double().eval()
    edit = Replace("6", "nn.Linear(16, 5)", seed=3)
    direct = Replace("6", "nn.Linear(16, 5)", seed=3)
    (new,) = to_build(edit, net)
    assert (new.device.type, new.dtype, new.training) == ("cpu", torch.float64, False)
    built_then_applied(edit, net)
    direct.apply(same)
    assert net[6] is edit.new and not net[6].training
    weight = net.get_parameter("6.weight")
    assert torch.equal(weight, same.get_parameter("6.weight")) and weight.dtype == torch.float64
    assert edit.as_code() == direct.as_code()
    assert edit.to_dict() == direct.to_dict()  # the recipe records the same seed
    old = edit.old
    edit.undo(net)
    assert net[6] is old
    edit.apply(net)  # a redo puts back the very object built, without building again
    assert net[6] is edit.new


def test_insert_and_add_are_prebuilt_and_a_delete_is_not() -> None:
    net = small_net()
    insert = Insert("", 7, "nn.Linear(10, 3)", seed=5)
    add = AddModule("", "extra", "nn.Linear(2, 2)", seed=6)
    assert [n.edit for n in to_build(insert, net)] == [insert]
    assert [n.edit for n in to_build(add, net)] == [add]
    assert to_build(Delete("5"), net) == []
    assert to_build(Reinit("6", "xavier_uniform", 1), net) == []
    built_then_applied(insert, net)
    built_then_applied(add, net)
    assert net[7] is insert.new and net.extra is add.new
    reference = build_seeded("nn.Linear(10, 3)", 5, torch.device("cpu"), None)
    assert torch.equal(net.get_parameter("7.weight"), reference.get_parameter("weight"))


def test_a_batch_builds_one_module_per_part() -> None:
    net = small_net()
    first, second = Replace("4", "nn.Linear(256, 16)"), Replace("6", "nn.Linear(16, 10)")
    parts: list[Edit] = [first, second]
    batch = Batch("cls:Linear", parts, "replace with")
    builds = to_build(batch, net)
    assert [b.edit for b in builds] == parts
    built_then_applied(batch, net)
    assert net[4] is first.new and net[6] is second.new


def test_seeded_builds_in_threads_keep_their_seeds_bytes() -> None:
    """torch's generator is one per process: builds in two threads at once still draw their
    own seed's numbers, and the caller's random state is left alone."""
    reference = build_seeded("nn.Linear(256, 256)", 7, torch.device("cpu"), None)
    weight = reference.get_parameter("weight")
    results: list[bool] = []

    def build() -> None:
        for _ in range(10):
            module = build_seeded("nn.Linear(256, 256)", 7, torch.device("cpu"), None)
            results.append(torch.equal(module.get_parameter("weight"), weight))

    threads = [threading.Thread(target=build) for _ in range(2)]
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    for thread in threads:
        thread.start()
    for _ in range(10):
        with seeded(8):
            torch.rand(256, 256)
    for thread in threads:
        thread.join(60)
    assert results == [True] * 20
    assert torch.equal(torch.rand(4), expected)
