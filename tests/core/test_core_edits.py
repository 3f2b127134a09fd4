"""Freeze and re-initialise on small models, each undone exactly."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

import pytest
import torch
from torch import nn

from modelbrowse.core.edits.base import EditError
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.reinit import SCHEME_NAMES, SCHEMES, Reinit
from modelbrowse.core.errors import ModelBrowseError
from tests.edit_support import assert_state, flags, small_net, state
from tests.fixtures.models import Holder, SharedNet

# --- freeze / unfreeze ---------------------------------------------------------------------------


def test_freeze_a_subtree_then_undo_restores_each_flag() -> None:
    """A partly frozen subtree comes back partly frozen, parameter by parameter."""
    net = small_net()
    net[4].bias.requires_grad_(False)
    before = flags(net)
    edit = SetTrainable("", trainable=False)
    edit.apply(net)
    assert not any(flags(net).values())
    assert edit.as_code() == ["model.requires_grad_(False)"]
    edit.undo(net)
    assert flags(net) == before
    unfreeze = SetTrainable("4", trainable=True)
    unfreeze.apply(net)
    assert net[4].bias.requires_grad and net[4].weight.requires_grad
    unfreeze.undo(net)
    assert flags(net) == before


def test_freeze_one_parameter() -> None:
    net = small_net()
    edit = SetTrainable("4.weight", trainable=False)
    edit.apply(net)
    assert [n for n, f in flags(net).items() if not f] == ["4.weight"]
    assert edit.as_code() == ["model[4].weight.requires_grad_(False)"]
    assert edit.describe() == "freeze 4.weight"


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("1.running_mean", EditError, "1.running_mean is a buffer: buffers have no requires_grad"),
        ("2", EditError, "2 has no parameters to freeze"),
        ("4.nothing", EditError, "no parameter or buffer at '4.nothing'"),
        ("9.weight", ModelBrowseError, "no module at '9'"),
    ],
)
def test_freeze_refusals(path: str, error: type[Exception], message: str) -> None:
    net = small_net()
    before = flags(net)
    with pytest.raises(error, match=re.escape(message)):
        SetTrainable(path, trainable=False).apply(net)
    assert flags(net) == before


@pytest.mark.parametrize("path", ["encoder", "decoder.proj", "encoder.weight", "head"])
def test_freezing_one_alias_freezes_what_both_paths_see(path: str) -> None:
    """`encoder` is `decoder.proj`; `head.weight` is `embed.weight`: one tensor, two names."""
    net = SharedNet()
    SetTrainable(path, trainable=False).apply(net)
    frozen = {n for n, f in flags(net).items() if not f}
    expected = {
        "encoder": {"encoder.weight", "encoder.bias", "decoder.proj.weight", "decoder.proj.bias"},
        "decoder.proj": {
            "encoder.weight",
            "encoder.bias",
            "decoder.proj.weight",
            "decoder.proj.bias",
        },
        "encoder.weight": {"encoder.weight", "decoder.proj.weight"},
        "head": {"head.weight", "embed.weight"},
    }[path]
    assert frozen == expected


# --- re-initialise -------------------------------------------------------------------------------

INITS: dict[str, Callable[[torch.Tensor], object]] = {
    "xavier_uniform": nn.init.xavier_uniform_,
    "xavier_normal": nn.init.xavier_normal_,
    "kaiming_uniform": nn.init.kaiming_uniform_,
    "kaiming_normal": nn.init.kaiming_normal_,
    "normal(std=0.01)": partial(nn.init.normal_, std=0.01),
    "trunc_normal(std=0.02)": partial(nn.init.trunc_normal_, std=0.02),
    "zeros": nn.init.zeros_,
    "ones": nn.init.ones_,
}


def test_every_scheme_is_covered() -> None:
    assert sorted(SCHEME_NAMES) == sorted(["reset_parameters", *INITS])


@pytest.mark.parametrize("scheme", list(INITS))
def test_a_scheme_draws_the_weight_from_the_seed(scheme: str) -> None:
    """A Linear's weight is exactly what the nn.init function gives after manual_seed(seed)."""
    layer = nn.Linear(64, 32)
    expected = layer.weight.detach().clone()
    torch.manual_seed(1234)
    INITS[scheme](expected)
    Reinit("", scheme, seed=1234).apply(layer)
    assert torch.equal(layer.weight, expected)
    assert torch.equal(layer.bias, torch.zeros(32))


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_reinit_a_whole_model(scheme: str) -> None:
    """Weights get the scheme, biases zeros, norms 1 and 0, running stats reset; undo is exact."""
    net, twin = small_net(), small_net()
    original = state(net)
    tensors = list(net.state_dict(keep_vars=True).values())
    rng = torch.random.get_rng_state()
    edit = Reinit("", scheme, seed=99)
    edit.apply(net)
    Reinit("", scheme, seed=99).apply(twin)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the global generator is untouched
    assert_state(twin, state(net))  # the seed makes it reproducible, bit for bit
    for index in (0, 4, 6):
        weight, bias = net.get_parameter(f"{index}.weight"), net.get_parameter(f"{index}.bias")
        assert not torch.equal(weight, original[f"{index}.weight"])
        if scheme != "reset_parameters":
            assert torch.equal(bias, torch.zeros_like(bias))
    for index in (1, 5):
        weight, bias = net.get_parameter(f"{index}.weight"), net.get_parameter(f"{index}.bias")
        assert torch.equal(weight, torch.ones_like(weight))
        assert torch.equal(bias, torch.zeros_like(bias))
    assert torch.equal(net.get_buffer("1.running_mean"), torch.zeros(4))
    assert torch.equal(net.get_buffer("1.running_var"), torch.ones(4))
    assert int(net.get_buffer("1.num_batches_tracked")) == 0
    assert edit.as_code()[0] == "torch.manual_seed(99)"
    assert "(seed 99)" in edit.describe()
    edit.undo(net)
    assert_state(net, original)
    assert list(net.state_dict(keep_vars=True).values()) == tensors  # same tensor objects


def test_reinit_one_tensor_touches_nothing_else() -> None:
    net = small_net()
    original = state(net)
    edit = Reinit("4.weight", "kaiming_normal", seed=5)
    edit.apply(net)
    changed = [k for k, v in original.items() if not torch.equal(net.state_dict()[k], v)]
    assert changed == ["4.weight"]
    assert edit.as_code() == ["torch.manual_seed(5)", "nn.init.kaiming_normal_(model[4].weight)"]
    edit.undo(net)
    assert_state(net, original)


def test_reset_parameters_reports_parameters_it_leaves_alone() -> None:
    """A custom module without reset_parameters(): its own parameters are left, and said."""
    model = Holder()
    before = model.block.W.detach().clone()
    edit = Reinit("", "reset_parameters", seed=1)
    edit.apply(model)
    assert edit.skipped == ["block.W", "block.b"]
    assert torch.equal(model.block.W, before)
    assert edit.describe().endswith("; left as they were (no reset_parameters()): block.W, block.b")
    with pytest.raises(EditError, match=re.escape("choose a scheme")):
        Reinit("block.W", "reset_parameters").apply(model)
    message = "nothing in block has reset_parameters() for block.W, block.b: choose a scheme"
    with pytest.raises(EditError, match=re.escape(message)):
        Reinit("block", "reset_parameters").apply(model)
    assert torch.equal(model.block.W, before)


@pytest.mark.parametrize("scheme", [s for s in SCHEME_NAMES if s != "reset_parameters"])
def test_a_scheme_reaches_plain_parameters_of_a_custom_module(scheme: str) -> None:
    """`self.W = nn.Parameter(...)`: the matrix by the scheme, the vector zeros under a
    scheme with fans and by the scheme's own rule otherwise; undo is exact."""
    model = Holder()
    original = state(model)
    edit = Reinit("block", scheme, seed=7)
    edit.apply(model)
    expected_w = torch.empty(4, 3)
    torch.manual_seed(7)
    INITS[scheme](expected_w)
    assert torch.equal(model.block.W, expected_w)
    vector = model.block.b
    if SCHEMES[scheme].needs_matrix:
        assert torch.equal(vector, torch.zeros(4))
    elif scheme in ("zeros", "ones"):
        assert torch.equal(vector, torch.full((4,), float(scheme == "ones")))
    else:
        assert not torch.equal(vector, torch.full((4,), 5.0))
        assert vector.abs().max() < 0.1  # drawn with a std of 0.01 or 0.02
    assert edit.skipped == []
    assert f"{SCHEMES[scheme].code('model.block.W')}" in edit.as_code()
    edit.undo(model)
    assert_state(model, original)


def test_a_scheme_reaches_parameters_of_layers_it_has_no_rule_for() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.PReLU(2))
    edit = Reinit("", "zeros", seed=1)
    edit.apply(net)
    assert edit.skipped == []
    assert torch.equal(net.get_parameter("1.weight"), torch.zeros(2))
    assert torch.equal(net.get_parameter("0.weight"), torch.zeros(2, 2))


@pytest.mark.parametrize(
    ("path", "scheme", "message"),
    [
        ("4.weight", "reset_parameters", "reset_parameters applies to modules"),
        ("4.bias", "xavier_uniform", "xavier_uniform needs a tensor of 2 or more dimensions"),
        ("1.running_mean", "kaiming_normal", "2 or more dimensions; 1.running_mean has 1"),
        ("1.num_batches_tracked", "normal(std=0.01)", "needs a floating-point tensor"),
        ("1.num_batches_tracked", "xavier_normal", "1.num_batches_tracked is torch.int64"),
        ("2", "xavier_uniform", "nothing to re-initialise in 2"),
        ("", "orthogonal", "unknown scheme 'orthogonal'"),
    ],
)
def test_reinit_refusals_leave_the_model_as_it_was(path: str, scheme: str, message: str) -> None:
    net = small_net()
    original = state(net)
    with pytest.raises(EditError, match=re.escape(message)):
        Reinit(path, scheme).apply(net)
    assert_state(net, original)


def test_reinit_names_the_dimensions_of_a_scalar() -> None:
    model = nn.Module()
    model.scale = nn.Parameter(torch.tensor(2.0))
    with pytest.raises(EditError, match=re.escape("2 or more dimensions; scale has 0")):
        Reinit("scale", "xavier_uniform").apply(model)
    assert model.scale.detach().item() == 2.0


def test_reinit_zeros_an_integer_buffer() -> None:
    net = small_net()
    Reinit("1.num_batches_tracked", "zeros").apply(net)
    assert int(net.get_buffer("1.num_batches_tracked")) == 0


@pytest.mark.parametrize("path", ["", "weight"])
@pytest.mark.parametrize("scheme", ["normal(std=0.01)", "xavier_uniform", "ones"])
def test_reinit_keeps_the_padding_row_of_an_embedding_zero(path: str, scheme: str) -> None:
    """As nn.Embedding's own reset_parameters() does; the code replays it."""
    embedding = nn.Embedding(10, 4, padding_idx=2)
    edit = Reinit(path, scheme, seed=3)
    edit.apply(embedding)
    assert torch.equal(embedding.weight[2], torch.zeros(4))
    assert not torch.equal(embedding.weight[1], torch.zeros(4))
    assert edit.as_code()[-1] == "nn.init.zeros_(model.weight[2])"
    replayed = nn.Embedding(10, 4, padding_idx=2)
    exec("\n".join(edit.as_code()), {"torch": torch, "nn": nn, "model": replayed})
    assert torch.equal(replayed.weight, embedding.weight)
    assert replayed.weight.requires_grad
