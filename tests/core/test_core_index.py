"""NodeIndex: paths, kinds, sharing, totals, find and search, on tiny and zoo models."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest
import torch
import torchvision
from torch import nn

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.nodes import NodeKind, Totals
from modelbrowse.core.text_tree import render_tree_text
from tests.fixtures.models import BufferAlias, SharedNet

ALEXNET_PARAMS = 61_100_840
SHARED_NET_PARAMS = 8 * 10 + (8 * 8 + 8)  # embed (tied with head) + encoder (also decoder.proj)


def unique_params(model: nn.Module) -> int:
    """What PyTorch counts: every Parameter object once."""
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    """Torchvision ResNet-18 with random initialisation: has BatchNorm buffers."""
    torch.manual_seed(0)
    model: nn.Module = torchvision.models.resnet18(weights=None)
    return model


@pytest.fixture
def shared_net() -> SharedNet:
    """A fresh SharedNet: a shared module, a tied weight, buffers and a plain tensor."""
    return SharedNet()


@pytest.fixture
def shared_index(shared_net: SharedNet) -> NodeIndex:
    return NodeIndex(shared_net)


# --- totals --------------------------------------------------------------------------------


def test_shared_net_total_counts_shared_and_tied_tensors_once(shared_index: NodeIndex) -> None:
    totals = shared_index.totals()
    assert totals.params == unique_params(shared_index.model) == SHARED_NET_PARAMS
    assert totals.trainable == SHARED_NET_PARAMS
    assert totals.frozen == 0


@pytest.mark.parametrize("name", ["alexnet", "resnet18"])
def test_zoo_model_total_equals_pytorch_parameter_count(
    name: str, request: pytest.FixtureRequest
) -> None:
    model: nn.Module = request.getfixturevalue(name)
    totals = NodeIndex(model).totals()
    assert totals.params == unique_params(model)
    assert totals.trainable == totals.params
    assert totals.frozen == 0


def test_alexnet_total_is_the_published_count(alexnet: nn.Module) -> None:
    assert NodeIndex(alexnet).totals().params == ALEXNET_PARAMS


def test_subtree_totals_sum_to_the_model_total(alexnet: nn.Module) -> None:
    index = NodeIndex(alexnet)
    top = [index.totals(n.path).params for n in index.child_modules("")]
    assert sum(top) == ALEXNET_PARAMS
    assert index.totals("classifier.6").params == 4096 * 1000 + 1000


def test_frozen_submodule_after_rebuilding_the_index() -> None:
    model = torchvision.models.alexnet(weights=None)
    features = unique_params(model.features)
    model.features.requires_grad_(False)
    index = NodeIndex(model)
    assert index.totals().params == ALEXNET_PARAMS
    assert index.totals().frozen == features
    assert index.totals().trainable == ALEXNET_PARAMS - features
    assert index.totals("features").trainable == 0
    assert index.totals("classifier").frozen == 0
    assert index.totals("features.0.weight") == Totals(
        params=23_232, trainable=0, nbytes=23_232 * 4, tensors=1
    )


def test_freezing_a_shared_module_freezes_it_under_both_paths(shared_net: SharedNet) -> None:
    shared_net.encoder.requires_grad_(False)
    index = NodeIndex(shared_net)
    assert index.totals().frozen == 8 * 8 + 8
    assert index.totals().trainable == 8 * 10
    assert index.totals("decoder").frozen == 8 * 8 + 8
    assert index.totals("decoder.proj").trainable == 0


def test_resnet_buffers_are_counted(resnet18: nn.Module) -> None:
    index = NodeIndex(resnet18)
    totals = index.totals()
    assert totals.buffers == sum(b.numel() for b in resnet18.buffers())
    assert totals.buffers > 0
    assert index.totals("bn1").buffers == 64 + 64 + 1  # running_mean, running_var, batches
    expected_bytes = sum(t.numel() * t.element_size() for t in resnet18.state_dict().values())
    assert totals.nbytes == expected_bytes


def test_shared_net_buffers_count_both_kinds_but_not_the_plain_tensor(
    shared_index: NodeIndex,
) -> None:
    totals = shared_index.totals()
    assert totals.buffers == 8 + 4  # scale (persistent) + cache (non-persistent); not mask
    assert totals.nbytes == (SHARED_NET_PARAMS + 12) * 4
    assert shared_index.totals("mask") == Totals()


def test_a_buffer_that_is_also_a_plain_attribute_is_counted_once() -> None:
    model = BufferAlias()
    index = NodeIndex(model)
    expected = sum(b.numel() for b in model.buffers())
    expected_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert (expected, expected_bytes) == (4, 20)
    assert (index.totals().buffers, index.totals().nbytes) == (expected, expected_bytes)
    assert index.totals().tensors == 3
    assert index.node("tensor").kind is NodeKind.UNREGISTERED_TENSOR  # still warned about
    assert index.aliases("tensor") == ["buffer", "tensor"]


# --- sharing -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["encoder", "decoder.proj"])
def test_shared_module_appears_under_both_paths(shared_index: NodeIndex, path: str) -> None:
    node = shared_index.node(path)
    assert node.is_module
    assert node.type_name == "Linear"
    assert shared_index.aliases(path) == ["encoder", "decoder.proj"]
    assert shared_index.is_shared(path)
    assert shared_index.totals(path).params == 8 * 8 + 8


def test_shared_module_paths_hold_the_same_object(shared_index: NodeIndex) -> None:
    assert shared_index.node("encoder").obj is shared_index.node("decoder.proj").obj
    assert [c.name for c in shared_index.children("decoder.proj")] == ["weight", "bias"]
    assert shared_index.aliases("decoder.proj.weight") == ["encoder.weight", "decoder.proj.weight"]


def test_tied_weight_is_shared(shared_index: NodeIndex) -> None:
    assert shared_index.node("head.weight").obj is shared_index.node("embed.weight").obj
    assert shared_index.aliases("head.weight") == ["embed.weight", "head.weight"]
    assert shared_index.is_shared("embed.weight")
    assert shared_index.totals("head").params == shared_index.totals("embed").params == 80


@pytest.mark.parametrize("path", ["decoder", "decoder.act", "scale", "embed"])
def test_unshared_paths_have_only_themselves_as_alias(shared_index: NodeIndex, path: str) -> None:
    assert shared_index.aliases(path) == [path]
    assert not shared_index.is_shared(path)


# --- kinds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "word", "type_name"),
    [
        ("", NodeKind.MODULE, "module", "SharedNet"),
        ("encoder", NodeKind.MODULE, "module", "Linear"),
        ("embed.weight", NodeKind.PARAMETER, "parameter", "Parameter"),
        ("scale", NodeKind.BUFFER, "buffer", "Tensor"),
        ("cache", NodeKind.NONPERSISTENT_BUFFER, "non-persistent buffer", "Tensor"),
        ("mask", NodeKind.UNREGISTERED_TENSOR, "unregistered tensor", "Tensor"),
    ],
)
def test_node_kinds(
    shared_index: NodeIndex, path: str, kind: NodeKind, word: str, type_name: str
) -> None:
    node = shared_index.node(path)
    assert node.kind is kind
    assert node.kind.value == word
    assert node.type_name == type_name


def test_tensor_node_exposes_its_tensor(shared_index: NodeIndex) -> None:
    mask = shared_index.node("mask")
    assert mask.tensor is shared_index.model.mask
    assert mask.tensor.shape == (3, 3)
    with pytest.raises(TypeError, match="encoder is a module"):
        _ = shared_index.node("encoder").tensor


def test_index_knows_whether_it_is_on_meta(alexnet: nn.Module) -> None:
    assert not NodeIndex(alexnet).is_meta
    with torch.device("meta"):
        on_meta = torchvision.models.alexnet(weights=None)
    assert NodeIndex(on_meta).is_meta


# --- find ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("classifier[6]", "classifier.6"),
        ("model.classifier.6.weight", "classifier.6.weight"),
        ("model.classifier[6].bias", "classifier.6.bias"),
        ("self.features[0]", "features.0"),
        ("  features.0.weight  ", "features.0.weight"),
        ("classifier", "classifier"),
        ("model", ""),
    ],
)
def test_find_accepts_paths_as_people_write_them(alexnet: nn.Module, text: str, path: str) -> None:
    assert NodeIndex(alexnet).find(text).path == path


def test_find_unknown_child_names_the_path_and_lists_the_siblings(alexnet: nn.Module) -> None:
    with pytest.raises(ModelBrowseError) as caught:
        NodeIndex(alexnet).find("classifier[9]")
    message = str(caught.value)
    assert message.startswith("no such path: 'classifier[9]'")
    assert "classifier has: 0, 1, 2, 3, 4, 5, 6" in message
    assert "\n" not in message


def test_find_unknown_top_level_name_lists_the_root_children(alexnet: nn.Module) -> None:
    with pytest.raises(ModelBrowseError, match=r"'nope\.weight'.*the root has: features"):
        NodeIndex(alexnet).find("nope.weight")


def test_node_with_unknown_path_raises_a_user_error(shared_index: NodeIndex) -> None:
    with pytest.raises(ModelBrowseError, match=re.escape("no such path: 'encoder.nope'")):
        shared_index.node("encoder.nope")


class Wrapper(nn.Module):
    """A wrapper whose only child is called `model`, as in many training wrappers."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Linear(2, 3))


def test_find_reaches_a_child_that_is_named_model() -> None:
    index = NodeIndex(Wrapper())
    assert "model.0" in index
    assert index.find("model.0").path == "model.0"
    assert index.find("model").path == "model"


# --- search --------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["conv2d", "CONV2D", " Conv2d "])
def test_search_by_class_name_is_case_insensitive(alexnet: nn.Module, query: str) -> None:
    expected = ["features.0", "features.3", "features.6", "features.8", "features.10"]
    assert NodeIndex(alexnet).search(query) == expected


def test_search_by_path_substring(alexnet: nn.Module) -> None:
    assert NodeIndex(alexnet).search("classifier.6") == [
        "classifier.6",
        "classifier.6.weight",
        "classifier.6.bias",
    ]


def test_search_finds_shared_modules_under_every_path(shared_index: NodeIndex) -> None:
    assert shared_index.search("linear") == ["encoder", "decoder.proj", "head"]
    assert shared_index.search("buffer") == []
    assert shared_index.search("") == []


# --- tree order ----------------------------------------------------------------------------


def test_shared_net_paths_in_tree_order(shared_index: NodeIndex) -> None:
    assert list(shared_index.paths()) == [
        "",
        "scale",
        "cache",
        "mask",
        "embed",
        "embed.weight",
        "encoder",
        "encoder.weight",
        "encoder.bias",
        "decoder",
        "decoder.proj",
        "decoder.proj.weight",
        "decoder.proj.bias",
        "decoder.act",
        "head",
        "head.weight",
    ]


class ChildFirst(nn.Module):
    """Registers a child module before its own parameter and buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        self.gain = nn.Parameter(torch.ones(2))
        self.register_buffer("offset", torch.zeros(2))
        self.tail = nn.Linear(2, 1)


def test_tensors_of_a_module_come_before_its_child_modules() -> None:
    index = NodeIndex(ChildFirst())
    assert list(index.paths()) == [
        "",
        "gain",
        "offset",
        "block",
        "block.0",
        "block.0.weight",
        "block.0.bias",
        "block.1",
        "block.1.weight",
        "block.1.bias",
        "block.1.running_mean",
        "block.1.running_var",
        "block.1.num_batches_tracked",
        "tail",
        "tail.weight",
        "tail.bias",
    ]
    assert [n.name for n in index.children("")] == ["gain", "offset", "block", "tail"]
    assert [n.path for n in index.child_modules("")] == ["block", "tail"]


def test_resnet_paths_are_a_depth_first_walk(resnet18: nn.Module) -> None:
    index = NodeIndex(resnet18)
    paths = list(index.paths())
    expected_modules = [name for name, _ in resnet18.named_modules()]
    assert [p for p in paths if index.node(p).is_module] == expected_modules
    position = {path: i for i, path in enumerate(paths)}
    for path in paths[1:]:
        node = index.node(path)
        assert node.parent is not None
        assert position[node.parent] < position[path]
        assert node.depth == index.node(node.parent).depth + 1


# --- depth ---------------------------------------------------------------------------------


@pytest.fixture
def low_recursion_limit() -> Iterator[int]:
    """The default recursion limit, whatever the test runner set it to."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield 1000
    finally:
        sys.setrecursionlimit(old)


def test_a_model_3000_modules_deep_does_not_hit_the_recursion_limit(
    low_recursion_limit: int,
) -> None:
    depth = 3000
    assert depth > low_recursion_limit
    model: nn.Module = nn.Linear(2, 2)
    for _ in range(depth):
        model = nn.Sequential(model)
    index = NodeIndex(model)
    deepest = ".".join(["0"] * depth)
    assert len(index) == depth + 1 + 2  # Sequentials, the Linear, its weight and bias
    assert index.node(deepest).type_name == "Linear"
    assert index.node(deepest).depth == depth
    assert index.find(deepest + ".weight").kind is NodeKind.PARAMETER
    assert index.totals().params == 6
    assert index.search("linear") == [deepest]
    text = render_tree_text(index)
    assert "Total params: 6  trainable: 6" in text


class ScaledList(nn.Module):
    """A long list under a module that also has a tensor of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.layers = nn.ModuleList(nn.Linear(1, 1) for _ in range(250))


def test_a_page_of_child_modules_and_a_module_s_position_among_them() -> None:
    index = NodeIndex(nn.Sequential(ScaledList()))
    modules = index.child_modules("0")
    assert [n.path for n in modules] == ["0.layers"]
    assert [n.path for n in index.child_tensors("0")] == ["0.scale"]
    layers = index.child_modules("0.layers")
    assert index.module_count("0.layers") == len(layers) == 250
    assert index.child_modules("0.layers", 100, 200) == layers[100:200]
    assert index.child_modules("0.layers", 200, 300) == layers[200:]
    assert [index.module_position(n.path) for n in layers] == list(range(250))
    assert index.module_position("0.layers") == 0
    assert index.module_position("0.scale") == -1
    assert index.module_position("") == -1
