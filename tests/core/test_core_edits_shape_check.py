"""The shape check after an edit: a forward pass on meta that names the module that broke."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.edits.modules import Delete, Replace
from modelbrowse.core.edits.shape_check import ShapeCheck, check_shapes, describe_output, meta_copy
from tests.fixtures.models import SharedNet

IMAGE = ((1, 3, 224, 224),)


def test_replacing_the_head_changes_the_output_shape(alexnet: nn.Module) -> None:
    history = EditHistory(alexnet)
    assert check_shapes(alexnet, IMAGE) == ShapeCheck(True, "output (1, 1000)")
    history.apply(Replace("classifier.6", "nn.Linear(4096, 10)"))
    try:
        assert check_shapes(alexnet, IMAGE) == ShapeCheck(True, "output (1, 10)")
    finally:
        history.undo()
    assert check_shapes(alexnet, IMAGE) == ShapeCheck(True, "output (1, 1000)")


@pytest.mark.parametrize(
    ("path", "spec", "message"),
    [
        (
            "classifier.1",
            "nn.Linear(2048, 4096)",
            "classifier.1: expected 2048 input features, got 9216",
        ),
        (
            "classifier.4",
            "nn.Linear(4096, 512)",
            "classifier.6: expected 4096 input features, got 512",
        ),
        ("features.3", "nn.Conv2d(32, 192, 5)", "features.3: expected 32 input channels, got 64"),
        (
            "features.0",
            "nn.Conv2d(3, 32, 11, 4, 2)",
            "features.3: expected 64 input channels, got 32",
        ),
        (
            "classifier.1",
            "nn.Module()",
            "classifier.1: NotImplementedError: Module [Module] is missing",
        ),
    ],
)
def test_a_broken_replacement_names_the_module_that_no_longer_fits(
    alexnet: nn.Module, path: str, spec: str, message: str
) -> None:
    history = EditHistory(alexnet)
    history.apply(Replace(path, spec))
    try:
        result = check_shapes(alexnet, IMAGE)
    finally:
        history.undo()
    assert result.ok is False
    assert result.message.startswith(message)


def test_a_batch_norm_of_the_wrong_width_is_named() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18()
    Replace("layer1.0.bn1", "nn.BatchNorm2d(32)").apply(model)
    assert check_shapes(model, IMAGE) == ShapeCheck(
        False, "layer1.0.bn1: expected 32 features, got 64"
    )


def test_delete_then_check() -> None:
    """Deleting a layer whose shapes matched keeps the check green; the output shape follows."""
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    Delete("1").apply(model)
    assert check_shapes(model, ((2, 8),)) == ShapeCheck(True, "output (2, 3)")
    Delete("2").apply(model)
    assert check_shapes(model, ((2, 8),)) == ShapeCheck(True, "output (2, 8)")


class ItemNet(nn.Module):
    """A forward that reads a value: `.item()` has no answer on meta."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(x) * x.abs().max().item()
        return out


class BranchNet(ItemNet):
    """Data-dependent control flow."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) if x.sum() > 0 else x


class NumpyNet(ItemNet):
    """A round trip through numpy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(torch.from_numpy(np.asarray(x.numpy())))
        return out


class NonzeroNet(ItemNet):
    """An output whose size depends on the data."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(x)[x.nonzero(as_tuple=True)]
        return out


@pytest.mark.parametrize("cls", [ItemNet, BranchNet, NumpyNet, NonzeroNet])
def test_a_forward_that_cannot_run_on_meta_is_unavailable_not_failed(cls: type[nn.Module]) -> None:
    result = check_shapes(cls(), ((1, 4),))
    assert result.ok is None
    assert result.message.startswith("shape check unavailable: ")


def test_an_embedding_given_float_inputs_is_unavailable_not_failed() -> None:
    """The check's inputs are floats; a language model needs token ids."""
    result = check_shapes(SharedNet(), ((1, 5),))
    assert result.ok is None
    assert result.message.startswith("shape check unavailable: ")


def test_the_check_leaves_the_model_alone() -> None:
    model = SharedNet()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    check_shapes(model, ((1, 5),))
    check_shapes(nn.Sequential(model.encoder), ((1, 8),))
    assert model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers(), model.mask))
    assert not model.encoder._forward_hooks and not model.encoder._forward_pre_hooks


def test_meta_copy_keeps_sharing_and_copies_no_data() -> None:
    model = SharedNet()
    model.head.weight.requires_grad_(False)
    probe = meta_copy(model)
    assert probe.get_submodule("encoder") is probe.get_submodule("decoder.proj")
    assert probe.get_parameter("head.weight") is probe.get_parameter("embed.weight")
    assert not probe.get_parameter("head.weight").requires_grad
    assert all(t.is_meta for t in (*probe.parameters(), *probe.buffers(), probe.mask))
    assert not any(t.is_meta for t in model.parameters())


@pytest.mark.parametrize(
    ("output", "text"),
    [
        (torch.empty(1, 10), "(1, 10)"),
        (torch.empty(()), "()"),
        ((torch.empty(2), [torch.empty(3, 4)]), "[(2), [(3, 4)]]"),
        ({"logits": torch.empty(1, 2), "aux": None}, "{logits: (1, 2), aux: NoneType}"),
    ],
)
def test_describe_output(output: object, text: str) -> None:
    assert describe_output(output) == text
