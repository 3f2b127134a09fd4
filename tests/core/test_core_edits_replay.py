"""The edit history: undo, redo, unsaved counts, and its code replaying the edits bit for bit."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from modelbrowse.core.edits.base import Edit, iter_code
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.edits.modules import AddModule, Delete, Insert, Replace
from modelbrowse.core.edits.registry import EDIT_TYPES
from modelbrowse.core.edits.reinit import Reinit
from modelbrowse.core.edits.specs import SpecError
from tests.edit_support import assert_state, state
from tests.fixtures.models import Holder, SharedNet


def flags(model: nn.Module) -> list[tuple[str, bool]]:
    return [(n, p.requires_grad) for n, p in model.named_parameters(remove_duplicate=False)]


def structure(model: nn.Module) -> list[tuple[str, type[nn.Module]]]:
    return [(n, type(m)) for n, m in model.named_modules(remove_duplicate=False)]


def identities(model: nn.Module) -> list[tuple[str, int]]:
    """Which objects sit where: modules, parameters and buffers."""
    return [
        *((n, id(m)) for n, m in model.named_modules(remove_duplicate=False)),
        *((n, id(t)) for n, t in model.state_dict(keep_vars=True).items()),
    ]


def warm_up(model: nn.Module, *shape: int, dtype: torch.dtype = torch.float32) -> nn.Module:
    """One training-mode forward, so BatchNorm running stats are off their defaults."""
    with torch.no_grad():
        model(torch.randn(*shape, dtype=dtype))
    return model


def shared_net() -> SharedNet:
    return SharedNet()


def tiny_double() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    return warm_up(model.double(), 3, 4, dtype=torch.float64)


# Each case: a factory for the model (seeded before each call) and the edits, with fixed seeds.
CASES: dict[str, tuple[Callable[[], nn.Module], Callable[[], list[Edit]]]] = {
    "alexnet": (
        torchvision.models.alexnet,
        lambda: [
            Replace("classifier.6", "nn.Linear(4096, 10)", seed=1),
            SetTrainable("features", trainable=False),
            Reinit("classifier.6", "xavier_uniform", seed=2),
            Insert("classifier", 3, "nn.Dropout(0.25)", seed=3),
            Delete("classifier.0"),
            Reinit("features.0", "reset_parameters", seed=4),
            SetTrainable("features.0.bias", trainable=True),
            AddModule("", "extra", "nn.Linear(10, 2)", seed=5),
            # as the tutorials do: a child named '100' under a leaf, then an insert at 0
            AddModule("features.11", "100", "nn.BatchNorm2d(256)", seed=28),
            Insert("features", 0, "nn.Identity()", seed=29),
            Replace("features.12.100", "nn.BatchNorm2d(256, momentum=0.2)", seed=30),
            Reinit("features.12", "kaiming_uniform", seed=31),
        ],
    ),
    "resnet18": (
        lambda: warm_up(torchvision.models.resnet18(), 2, 3, 32, 32),
        lambda: [
            SetTrainable("layer1", trainable=False),
            Reinit("layer4.1", "kaiming_normal", seed=6),
            Reinit("bn1", "reset_parameters", seed=7),
            Replace("fc", "nn.Linear(512, 10)", seed=8),
            Insert("layer2", 1, "nn.Identity()", seed=9),
            Delete("layer3.1"),
            Reinit("layer2.0.conv1.weight", "trunc_normal(std=0.02)", seed=10),
            AddModule("layer1.0", "gate", "nn.Sigmoid()", seed=11),
            SetTrainable("layer1.0.conv1", trainable=True),
        ],
    ),
    "mobilenet_v3_small": (
        lambda: warm_up(torchvision.models.mobilenet_v3_small(), 2, 3, 32, 32),
        lambda: [
            Reinit("features", "reset_parameters", seed=12),
            Replace("classifier.3", "nn.Linear(1024, 10)", seed=13),
            SetTrainable("features.1.block", trainable=False),
            Reinit("classifier", "normal(std=0.01)", seed=14),
            Insert("features", 2, "nn.Identity()", seed=15),
            Reinit("features.0.1", "ones", seed=16),
            Replace(
                "features.3.block.0", "nn.Sequential(nn.Conv2d(24, 88, 1), nn.ReLU())", seed=17
            ),
        ],
    ),
    "SharedNet": (
        shared_net,
        lambda: [
            SetTrainable("head.weight", trainable=False),
            Replace("decoder.proj", "nn.Linear(8, 8)", seed=18),
            Reinit("", "xavier_normal", seed=19),
            Reinit("scale", "normal(std=0.01)", seed=20),
            AddModule("decoder", "norm", "nn.LayerNorm(8)", seed=21),
            Delete("decoder.act"),
            Reinit("decoder", "zeros", seed=22),
        ],
    ),
    "plain parameters": (
        Holder,
        lambda: [
            Reinit("", "kaiming_normal", seed=32),
            AddModule("block", "100", "nn.Linear(2, 2)", seed=33),
            Reinit("block", "trunc_normal(std=0.02)", seed=34),
            Reinit("block.W", "xavier_uniform", seed=35),
        ],
    ),
    "float64": (
        tiny_double,
        lambda: [
            Replace("3", "nn.Linear(8, 3)", seed=23),
            Insert("", 1, "nn.Linear(8, 8)", seed=24),
            Replace("3", "nn.GELU()", seed=25),
            Reinit("", "kaiming_uniform", seed=26),
            AddModule("2", "scale", "nn.BatchNorm1d(8)", seed=27),
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_history_code_replays_and_undo_redo_are_exact(case: str) -> None:
    """exec(history.code()) on a fresh model gives the edited model; undo all, redo all."""
    make, edits = CASES[case]
    torch.manual_seed(0)
    model = make()
    original, original_flags, original_ids = state(model), flags(model), identities(model)
    history = EditHistory(model)
    for edit in edits():
        history.apply(edit)
    edited, edited_flags, edited_ids = state(model), flags(model), identities(model)
    assert edited.keys() != original.keys() or any(
        not torch.equal(v, original[k]) for k, v in edited.items()
    )

    torch.manual_seed(1)  # a different random init, then the original weights loaded
    fresh = make()
    fresh.load_state_dict(original)
    namespace: dict[str, Any] = {"model": fresh}
    exec(history.code(), namespace)
    assert namespace["model"] is fresh
    assert_state(fresh, edited)
    assert flags(fresh) == edited_flags
    assert structure(fresh) == structure(model)
    if case == "SharedNet":
        assert fresh.encoder is fresh.decoder.proj
        assert fresh.head.weight is fresh.embed.weight

    while history.undo() is not None:
        pass
    assert_state(model, original)
    assert flags(model) == original_flags
    assert identities(model) == original_ids

    while history.redo() is not None:
        pass
    assert_state(model, edited)
    assert flags(model) == edited_flags
    assert identities(model) == edited_ids


def test_replay_writes_setattr_where_a_child_name_is_no_identifier() -> None:
    """`seq.conv-1` cannot be `getattr(model.seq, 'conv-1') = ...` in Python."""

    def make() -> nn.Module:
        torch.manual_seed(0)
        model = nn.Module()
        children = [("conv-1", nn.Linear(2, 2)), ("in", nn.ReLU()), ("ok", nn.Linear(2, 2))]
        model.seq = nn.Sequential(OrderedDict(children))
        return model

    model = make()
    history = EditHistory(model)
    history.apply(Replace("seq.conv-1", "nn.Linear(2, 2, bias=False)", seed=3))
    history.apply(Delete("seq.in"))
    history.apply(SetTrainable("seq.conv-1", trainable=False))
    code = history.code()
    assert "setattr(model.seq, 'conv-1', nn.Linear(2, 2, bias=False))" in code
    fresh = make()
    exec(code, {"model": fresh})
    assert structure(fresh) == structure(model)
    assert_state(fresh, state(model))
    assert flags(fresh) == flags(model)


# --- the history itself --------------------------------------------------------------------------


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def test_undo_and_redo_on_an_empty_history() -> None:
    history = EditHistory(net())
    assert history.undo() is None
    assert history.redo() is None
    assert history.unsaved == 0
    assert history.code() == "import torch\nfrom torch import nn\n\n"


def test_undo_redo_order_and_the_redo_tail() -> None:
    model = net()
    history = EditHistory(model)
    first = history.apply(SetTrainable("0", trainable=False))
    second = history.apply(Delete("2"))
    assert history.done == [first, second]
    assert history.undo() is second
    assert isinstance(model[2], nn.Linear)
    assert history.redo() is second
    assert isinstance(model[2], nn.Identity)
    assert history.undo() is second
    third = history.apply(Reinit("0", "zeros", seed=1))  # drops the redo tail
    assert history.undone == []
    assert history.redo() is None
    assert history.done == [first, third]
    assert isinstance(model[2], nn.Linear)


def test_a_failed_edit_is_not_recorded_and_keeps_the_redo_tail() -> None:
    model = net()
    history = EditHistory(model)
    edit = history.apply(Delete("2"))
    history.undo()
    with pytest.raises(SpecError):
        history.apply(Replace("0", "nn.Bogus()"))
    assert history.done == []
    assert history.redo() is edit


def test_unsaved_counts_edits_either_side_of_the_save() -> None:
    history = EditHistory(net())
    history.apply(SetTrainable("0", trainable=False))
    history.apply(Reinit("2", "ones", seed=1))
    assert history.unsaved == 2
    history.mark_saved()
    assert history.unsaved == 0
    history.undo()
    assert history.unsaved == 1
    history.redo()
    assert history.unsaved == 0
    history.undo()
    history.apply(Delete("1"))  # one saved edit undone, one new edit
    assert history.unsaved == 2
    history.undo()
    history.undo()
    assert history.unsaved == 2  # both saved edits are undone
    history.redo()
    assert history.unsaved == 1


def test_code_lists_each_done_edit_under_its_description() -> None:
    history = EditHistory(net())
    history.apply(SetTrainable("0", trainable=False))
    history.apply(Replace("2", "Linear(4, 3)", seed=7))
    history.apply(Delete("1"))
    history.undo()
    expected = [
        "# freeze 0",
        "model[0].requires_grad_(False)",
        "# replace 2 with nn.Linear(4, 3)",
        "torch.manual_seed(7)",
        "model[2] = nn.Linear(4, 3)",
    ]
    assert list(iter_code(history.done)) == expected
    assert history.code() == "import torch\nfrom torch import nn\n\n" + "\n".join(expected) + "\n"


def test_to_dict_rebuilds_each_edit() -> None:
    """The recipe records are enough to make the same edit again, with the same result."""
    edits: list[Edit] = [
        SetTrainable("0", trainable=False),
        Reinit("0", "xavier_normal", seed=3),
        Replace("2", "Linear(4, 3)", seed=4),
        Insert("", 1, "nn.Tanh()", seed=5),
        Delete("2"),
        AddModule("", "extra", "nn.Linear(3, 3)", seed=6),
    ]
    model, again = net(), net()
    for edit in edits:
        edit.apply(model)
        record = edit.to_dict()
        cls = EDIT_TYPES[record.pop("op")]
        assert cls is type(edit)
        cls(**record).apply(again)
    assert structure(again) == structure(model)
    assert_state(again, state(model))
    assert flags(again) == flags(model)
