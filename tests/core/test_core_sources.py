"""Model sources: torchvision names, weights, import paths, and the errors a user sees."""

from __future__ import annotations

import re
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision.models
import torchvision.models._api
from torch import nn

from modelbrowse.core.arguments import (
    ExampleInput,
    parse_example_input,
    parse_input_shape,
    parse_kwargs,
)
from modelbrowse.core.errors import SourceError, UsageError
from modelbrowse.core.example_inputs import input_dtypes, input_hint
from modelbrowse.core.sources.base import resolve_source
from tests.fixtures import models as fixture_models
from tests.model_support import submodule

ALEXNET_PARAMS = 61_100_840


def unique_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def all_on_meta(model: nn.Module) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return bool(tensors) and all(t.is_meta for t in tensors)


class DownloadAttempted(AssertionError):
    """Raised by the patched downloader when a test that must stay offline tries the network."""


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the weight downloader (both names torchvision may call) with one that records."""
    calls: list[str] = []

    def refuse(url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(url)
        raise DownloadAttempted(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    return calls


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The weight downloader fails as it does without a network."""
    calls: list[str] = []

    def fail(url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fail)
    return calls


# --- torchvision names ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["AlexNet", "alexnet", "ALEXNET", "  alexnet "])
def test_torchvision_names_are_case_insensitive(spec: str) -> None:
    source = resolve_source(spec)
    assert source.kind == "torchvision"
    assert source.spec == source.label == "alexnet"
    assert source.default_input == ((1, 3, 224, 224),)


def test_unknown_model_suggests_the_close_name() -> None:
    with pytest.raises(SourceError) as caught:
        resolve_source("alexnett")
    assert str(caught.value) == "unknown model 'alexnett' (did you mean: alexnet?)"


def test_unknown_model_without_a_close_name_has_no_hint() -> None:
    with pytest.raises(SourceError) as caught:
        resolve_source("zzqqxx")
    assert str(caught.value) == "unknown model 'zzqqxx'"


def test_empty_source() -> None:
    with pytest.raises(SourceError, match="no model given"):
        resolve_source("   ")


def test_alexnet_structure_is_built_on_meta() -> None:
    model, is_meta = resolve_source("alexnet").build_structure()
    assert is_meta
    assert all_on_meta(model)
    assert unique_params(model) == ALEXNET_PARAMS


def test_regnet_structure_is_built_on_meta_through_the_fallback() -> None:
    # RegNet computes on tensors while constructing; a plain meta device cannot run it.
    source = resolve_source("regnet_x_400mf")
    model, is_meta = source.build_structure()
    assert is_meta
    assert all_on_meta(model)
    assert unique_params(model) == unique_params(source.build_real())


def test_real_build_has_data() -> None:
    model = resolve_source("alexnet").build_real()
    assert not any(p.is_meta for p in model.parameters())
    assert unique_params(model) == ALEXNET_PARAMS


@pytest.mark.parametrize("build", ["build_structure", "build_real"])
def test_kw_reaches_the_builder(build: str) -> None:
    source = resolve_source("resnet18", {"num_classes": 10})
    result = getattr(source, build)()
    model = result[0] if isinstance(result, tuple) else result
    assert model.fc.out_features == 10
    assert source.record(None) == {
        "kind": "torchvision",
        "spec": "resnet18",
        "kwargs": {"num_classes": "10"},
        "weights": None,
        "init_seed": None,
        "reproducible": True,
    }


def test_bad_kw_is_a_source_error_naming_the_model() -> None:
    source = resolve_source("resnet18", {"no_such_option": 1})
    with pytest.raises(
        SourceError, match=r"^building resnet18 failed: TypeError: .*no_such_option"
    ):
        source.build_structure()


def test_detection_model_structure_does_not_download_backbone_weights(
    downloads: list[str],
) -> None:
    model, is_meta = resolve_source("fasterrcnn_mobilenet_v3_large_320_fpn").build_structure()
    assert downloads == []
    assert is_meta
    assert type(model).__name__ == "FasterRCNN"
    assert unique_params(model) > 0


# --- weights -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights", ["DEFAULT", "default", "IMAGENET1K_V1", "AlexNet_Weights.IMAGENET1K_V1"]
)
def test_weights_names_resolve_to_the_enum_member(weights: str) -> None:
    source = resolve_source("alexnet", weights=weights)
    assert source.weights == "AlexNet_Weights.IMAGENET1K_V1"
    assert source.record(None)["weights"] == "AlexNet_Weights.IMAGENET1K_V1"


def test_unknown_weights_list_the_available_ones() -> None:
    with pytest.raises(UsageError) as caught:
        resolve_source("alexnet", weights="IMAGENET9K")
    assert str(caught.value) == (
        "unknown weights 'IMAGENET9K' for alexnet (available: DEFAULT, IMAGENET1K_V1)"
    )


def test_weights_do_not_apply_to_import_paths() -> None:
    with pytest.raises(UsageError, match="torchvision models only"):
        resolve_source("tests.fixtures.models:SharedNet", weights="DEFAULT")


@pytest.mark.parametrize("build", ["build_real", "build_structure"])
def test_failed_download_is_one_clear_line(offline: list[str], build: str) -> None:
    source = resolve_source("alexnet", weights="DEFAULT")
    with pytest.raises(SourceError) as caught:
        getattr(source, build)()
    message = str(caught.value)
    assert message.startswith("could not download weights")
    assert "AlexNet_Weights.IMAGENET1K_V1" in message
    assert "offline" in message
    assert "\n" not in message
    assert len(offline) == 1


# --- import paths --------------------------------------------------------------------------


def test_import_path_to_a_class() -> None:
    source = resolve_source("tests.fixtures.models:SharedNet")
    assert source.kind == "import"
    model, is_meta = source.build_structure()
    assert isinstance(model, fixture_models.SharedNet)
    assert is_meta
    assert unique_params(model) == 152


def test_file_path_to_a_factory(models_file: Path) -> None:
    source = resolve_source(f"{models_file}:make_shared_net")
    model, _ = source.build_structure()
    assert type(model).__name__ == "SharedNet"
    assert model.get_parameter("head.weight") is model.get_parameter("embed.weight")
    assert unique_params(model) == 152


def test_class_gets_the_kw(models_file: Path) -> None:
    model, _ = resolve_source(f"{models_file}:WideList", {"n": 3}).build_structure()
    assert len(submodule(model, "layers", nn.ModuleList)) == 3


def test_instance_is_returned_as_is() -> None:
    source = resolve_source("tests.fixtures.models:INSTANCE")
    model, is_meta = source.build_structure()
    assert model is fixture_models.INSTANCE
    assert not is_meta
    assert source.build_real() is fixture_models.INSTANCE


def test_instance_from_a_file_is_returned_as_is(models_file: Path) -> None:
    source = resolve_source(f"{models_file}:INSTANCE")
    model, is_meta = source.build_structure()
    assert not is_meta
    assert model is source.instance
    assert source.build_real() is model


def test_instance_refuses_kw() -> None:
    with pytest.raises(UsageError, match="module instance: --kw does not apply"):
        resolve_source("tests.fixtures.models:INSTANCE", {"n": 1})


@pytest.mark.parametrize("build", ["build_structure", "build_real"])
def test_failing_constructor_names_the_source_and_the_error(models_file: Path, build: str) -> None:
    spec = f"{models_file}:Broken"
    with pytest.raises(SourceError) as caught:
        getattr(resolve_source(spec), build)()
    assert str(caught.value) == f"building {spec} failed: ValueError: broken on purpose"


def test_factory_returning_something_else_is_not_a_model(models_file: Path) -> None:
    spec = f"{models_file}:not_a_model"
    with pytest.raises(SourceError) as caught:
        resolve_source(spec).build_structure()
    assert str(caught.value) == f"{spec} returned int, not an nn.Module"


def test_class_that_is_not_a_module() -> None:
    with pytest.raises(SourceError, match=r"^builtins:dict is the class dict, not an nn.Module"):
        resolve_source("builtins:dict")


def test_value_that_is_not_callable() -> None:
    with pytest.raises(SourceError, match=r"^math:pi is a float, not an nn.Module"):
        resolve_source("math:pi")


def test_missing_attribute() -> None:
    with pytest.raises(SourceError) as caught:
        resolve_source("tests.fixtures.models:NoSuchNet")
    assert str(caught.value) == (
        "tests.fixtures.models:NoSuchNet: 'tests.fixtures.models' has no attribute 'NoSuchNet'"
    )


def test_missing_module() -> None:
    with pytest.raises(SourceError) as caught:
        resolve_source("tests.fixtures.no_such_module:Net")
    assert str(caught.value) == (
        "cannot import 'tests.fixtures.no_such_module' for tests.fixtures.no_such_module:Net: "
        "ModuleNotFoundError: No module named 'tests.fixtures.no_such_module'"
    )


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.py"
    with pytest.raises(SourceError) as caught:
        resolve_source(f"{missing}:Net")
    assert str(caught.value) == f"{missing}:Net: no such file '{missing}'"


def test_file_that_fails_to_import(tmp_path: Path) -> None:
    path = tmp_path / "bad_import.py"
    path.write_text("import torch\nraise RuntimeError('bad module\\nsecond line')\n")
    with pytest.raises(SourceError) as caught:
        resolve_source(f"{path}:Net")
    assert str(caught.value) == (f"cannot import '{path}' for {path}:Net: RuntimeError: bad module")


def test_file_can_import_its_siblings(tmp_path: Path) -> None:
    (tmp_path / "sibling_layers.py").write_text(
        "from torch import nn\n\ndef block() -> nn.Module:\n    return nn.Linear(3, 4)\n"
    )
    (tmp_path / "net.py").write_text(
        "from torch import nn\nfrom sibling_layers import block\n\n"
        "class Net(nn.Module):\n    def __init__(self) -> None:\n"
        "        super().__init__()\n        self.body = block()\n"
    )
    model, _ = resolve_source(f"{tmp_path / 'net.py'}:Net").build_structure()
    assert unique_params(model) == 3 * 4 + 4


@pytest.mark.parametrize("spec", [":Net", "tests.fixtures.models:"])
def test_malformed_import_path(spec: str) -> None:
    with pytest.raises(SourceError, match=re.escape("is not of the form package.module:attr")):
        resolve_source(spec)


TIED_NEEDS_DATA = """\
import torch
from torch import nn


class TiedNeedsData(nn.Module):
    '''Computes on a tensor while constructing (no meta device), and ties two weights.'''

    def __init__(self) -> None:
        super().__init__()
        width = int(torch.tensor([8.0]).sum().item())
        self.embed = nn.Embedding(10, width)
        self.head = nn.Linear(width, 10, bias=False)
        self.head.weight = self.embed.weight
"""


def test_meta_fallback_keeps_tied_weights(tmp_path: Path) -> None:
    path = tmp_path / "tied.py"
    path.write_text(TIED_NEEDS_DATA)
    source = resolve_source(f"{path}:TiedNeedsData")
    real = source.build_real()
    assert real.get_parameter("head.weight") is real.get_parameter("embed.weight")
    model, is_meta = source.build_structure()
    assert is_meta
    assert unique_params(model) == unique_params(real) == 80
    assert model.get_parameter("head.weight") is model.get_parameter("embed.weight")


# --- command-line values -------------------------------------------------------------------


def test_parse_kwargs_reads_python_literals() -> None:
    assert parse_kwargs(
        [
            "num_classes=10",
            "dropout=0.1",
            "aux_logits=False",
            "sizes=(1, 2)",
            "name='vit'",
            "norm=batch",
            " depth = 12 ",
            "expr=a=b",
        ]
    ) == {
        "num_classes": 10,
        "dropout": 0.1,
        "aux_logits": False,
        "sizes": (1, 2),
        "name": "vit",
        "norm": "batch",
        "depth": 12,
        "expr": "a=b",
    }


def test_parse_kwargs_of_nothing() -> None:
    assert parse_kwargs([]) == {}


@pytest.mark.parametrize("pair", ["num_classes", "=3", "1x=2", "a-b=1", ""])
def test_parse_kwargs_rejects_malformed_pairs(pair: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_kwargs([pair])
    assert str(caught.value) == f"--kw expects NAME=VALUE, got {pair!r}"


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("1,3,224,224", ((1, 3, 224, 224),)),
        ("1x3x64x64", ((1, 3, 64, 64),)),
        (" 1, 3, 32 ", ((1, 3, 32),)),
        ("8", ((8,),)),
        ("1,3,128,128;1,3,128,128", ((1, 3, 128, 128), (1, 3, 128, 128))),
    ],
)
def test_parse_input_shape(text: str, shape: tuple[tuple[int, ...], ...]) -> None:
    assert parse_input_shape(text) == shape


@pytest.mark.parametrize("text", ["", "a,b", "1,3,0", "-1,3", "1,3;", "1.5,2", ";"])
def test_parse_input_shape_rejects_bad_values(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_input_shape(text)
    assert str(caught.value) == (
        f"--input-shape expects positive integers such as 1,3,224,224, got {text!r}"
    )


@pytest.mark.parametrize(
    ("text", "dtype", "example"),
    [
        ("1,16", None, ExampleInput(((1, 16),), (None,))),
        ("1,16", "long", ExampleInput(((1, 16),), ("int64",))),
        ("1,16:long", None, ExampleInput(((1, 16),), ("int64",))),
        ("1,16:Int;1,16", "half", ExampleInput(((1, 16), (1, 16)), ("int32", "float16"))),
        ("1x3x8x8:bfloat16", None, ExampleInput(((1, 3, 8, 8),), ("bfloat16",))),
    ],
)
def test_parse_example_input(text: str, dtype: str | None, example: ExampleInput) -> None:
    assert parse_example_input(text, dtype) == example


def test_an_input_dtype_is_chosen_from_the_first_layer(models_file: Path) -> None:
    tokens = resolve_source(f"{models_file}:SharedNet").build_structure()[0]
    image = resolve_source("alexnet").build_structure()[0]
    example = parse_example_input("1,4;1,4:float")
    assert input_dtypes(tokens, example) == ("int64", "float32")
    assert input_dtypes(image, example) == ("float32", "float32")
    assert input_hint(tokens) == "1,16:long"
    assert input_hint(image) == "1,3,224,224"


def test_a_source_from_code_declares_what_the_app_reads_with_empty_defaults() -> None:
    source = resolve_source("alexnet")
    shown = (source.info, source.warnings, source.fit, source.files, source.edit_refusal)
    assert shown == ([], [], None, [], None)
    assert not source.weights_only
    assert source.random_values
    assert not resolve_source("alexnet", weights="DEFAULT").random_values
