"""The recipe beside saved weights, and `load_edited`: the edited model back in one line."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from modelbrowse.core import load_edited as load_edited_exported
from modelbrowse.core.edits.base import Edit
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.edits.modules import AddModule, Replace
from modelbrowse.core.edits.reinit import Reinit
from modelbrowse.core.recipe import RecipeError, load_edited, read_recipe, save_edited
from modelbrowse.core.sources.base import Source, resolve_source
from tests.edit_support import flags, state
from tests.model_support import submodule
from tests.saving_support import (
    FORMATS,
    assert_same_tensors,
    files_in,
    one_line,
    sha256,
    write_tied_net,
)

SEED = 3


def edited(source: Source, edits: list[Edit], seed: int = SEED) -> tuple[nn.Module, list[Edit]]:
    """The source built with `seed` and the edits applied, as the app does."""
    history = EditHistory(source.build_real(seed))
    for edit in edits:
        history.apply(edit)
    return history.model, list(history.done)


def assert_same_model(loaded: nn.Module, original: nn.Module) -> None:
    """Bit-for-bit state, the same requires_grad flags, the same module types at each path."""
    assert_same_tensors(loaded.state_dict(), state(original))
    assert flags(loaded) == flags(original)
    assert [(n, type(m)) for n, m in loaded.named_modules(remove_duplicate=False)] == [
        (n, type(m)) for n, m in original.named_modules(remove_duplicate=False)
    ]


def recipe_file(weights: Path) -> Path:
    return weights.with_name(weights.name + ".recipe.json")


# --- SharedNet, from a models file given by a relative path -----------------------------------


@pytest.fixture
def shared_source(models_file: Path, monkeypatch: pytest.MonkeyPatch) -> Source:
    monkeypatch.chdir(models_file.parent)
    return resolve_source(f"{models_file.name}:SharedNet")


def shared_edits() -> list[Edit]:
    return [
        SetTrainable("encoder", trainable=False),
        Reinit("embed", "normal(std=0.01)"),
        AddModule("", "extra", "nn.Linear(10, 2)"),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_recipe_beside_the_weights(
    tmp_path: Path, models_file: Path, shared_source: Source, fmt: str
) -> None:
    model, edits = edited(shared_source, shared_edits())
    weights = tmp_path / f"shared.{fmt}"
    report = save_edited(model, weights, shared_source, SEED, edits)

    assert files_in(tmp_path) == sorted([weights.name, f"shared.{fmt}.recipe.json"])
    recipe = json.loads(recipe_file(weights).read_text(encoding="utf-8"))
    assert recipe["format"] == "modelbrowse-recipe"
    assert recipe["version"] == 1
    assert recipe["torch"] == torch.__version__
    assert isinstance(recipe["modelbrowse"], str) and recipe["modelbrowse"]
    created = dt.datetime.fromisoformat(recipe["created"])
    assert abs(dt.datetime.now(dt.timezone.utc) - created) < dt.timedelta(minutes=5)
    assert recipe["source"] == {
        "kind": "import",
        "spec": f"{models_file.resolve()}:SharedNet",  # absolute: loads from anywhere
        "kwargs": {},
        "weights": None,
        "init_seed": SEED,
        "reproducible": True,
    }
    assert recipe["edits"] == [edit.to_dict() for edit in edits]
    assert recipe["edits"][0] == {"op": "set_trainable", "path": "encoder", "trainable": False}
    assert recipe["edits"][1]["seed"] == edits[1].to_dict()["seed"]
    assert recipe["frozen"] == [
        "encoder.weight",
        "encoder.bias",
        "decoder.proj.weight",
        "decoder.proj.bias",
    ]
    assert recipe["weights"] == {
        "file": weights.name,
        "format": fmt,
        "sha256": sha256(weights),
        "tensors": 9,
        "params": 152 + 22,
    }
    assert report.sha256 == recipe["weights"]["sha256"]
    assert read_recipe(recipe_file(weights)) == recipe


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_edited_shared_net_from_another_directory(
    tmp_path: Path,
    models_file: Path,
    shared_source: Source,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
) -> None:
    model, edits = edited(shared_source, shared_edits())
    save_edited(model, tmp_path / f"shared.{fmt}", shared_source, SEED, edits)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")

    loaded = load_edited(f"../shared.{fmt}", source=f"{models_file.resolve()}:SharedNet")
    assert type(loaded).__name__ == "SharedNet"
    assert_same_model(loaded, model)
    assert loaded.get_parameter("head.weight") is loaded.get_parameter("embed.weight")  # tied
    # The shared module is still one module.
    assert loaded.get_submodule("encoder") is loaded.get_submodule("decoder.proj")
    assert isinstance(loaded.extra, nn.Linear) and loaded.extra.out_features == 2
    assert not loaded.get_parameter("encoder.weight").requires_grad
    assert loaded.get_parameter("embed.weight").requires_grad
    # `cache` is not in the file: the model was built for real, and it has its real values.
    assert not loaded.get_buffer("cache").is_meta
    assert torch.equal(loaded.get_buffer("cache"), torch.zeros(4))
    assert not loaded.mask.is_meta
    assert loaded(torch.tensor([[1, 2, 3]])).shape == (1, 3, 10)


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_edited_restores_ties_on_the_meta_path(tmp_path: Path, fmt: str) -> None:
    source = resolve_source(f"{write_tied_net(tmp_path)}:TiedNet")
    model, edits = edited(
        source, [SetTrainable("embed", trainable=False), Reinit("encoder", "xavier_uniform")]
    )
    weights = tmp_path / f"tied.{fmt}"
    save_edited(model, weights, source, SEED, edits)

    # As `modelbrowse.core.load_edited`; the import path is the caller's to name.
    loaded = load_edited_exported(weights, source=source.spec)
    assert_same_model(loaded, model)
    assert loaded.get_parameter("head.weight") is loaded.get_parameter("embed.weight")
    assert loaded.get_submodule("encoder") is loaded.get_submodule("decoder.proj")
    assert not loaded.get_parameter("head.weight").requires_grad
    assert all(not t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))

    # Training the loaded model in place does not write through to the file...
    before = sha256(weights)
    with torch.no_grad():
        loaded.get_parameter("encoder.weight").add_(1.0)
        loaded.get_parameter("embed.weight").mul_(2.0)
    assert sha256(weights) == before
    # ... and it can be saved back over the file it came from.
    save_edited(loaded, weights, source, SEED, edits)
    again = load_edited(weights, source=source.spec)
    assert_same_model(again, loaded)
    assert again.get_parameter("head.weight") is again.get_parameter("embed.weight")
    assert files_in(tmp_path) == sorted(["tied_models.py", weights.name, recipe_file(weights).name])


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_edited_resnet18_with_batchnorm_buffers(tmp_path: Path, fmt: str) -> None:
    source = resolve_source("resnet18")
    model, edits = edited(
        source,
        [
            Replace("fc", "nn.Linear(512, 10)"),
            SetTrainable("layer1", trainable=False),
            Reinit("layer4.1.bn2", "reset_parameters"),
        ],
    )
    with torch.no_grad():  # running stats and num_batches_tracked off their defaults
        model(torch.randn(2, 3, 32, 32))
        model(torch.randn(2, 3, 32, 32))
    assert model.get_buffer("bn1.num_batches_tracked").item() == 2

    save_edited(model, tmp_path / f"resnet.{fmt}", source, SEED, edits)
    loaded = load_edited(tmp_path / f"resnet.{fmt}")
    assert_same_model(loaded, model)
    assert submodule(loaded, "fc", nn.Linear).out_features == 10
    assert loaded.get_buffer("bn1.num_batches_tracked").dtype == torch.int64
    assert loaded.get_buffer("bn1.num_batches_tracked").item() == 2
    assert not loaded.get_parameter("layer1.0.conv1.weight").requires_grad
    assert loaded.get_parameter("layer2.0.conv1.weight").requires_grad


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_the_loaded_model_computes_what_the_saved_one_did(tmp_path: Path, fmt: str) -> None:
    source = resolve_source("resnet18")
    model, edits = edited(source, [Replace("fc", "nn.Linear(512, 10)")])
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    save_edited(model, tmp_path / f"resnet.{fmt}", source, SEED, edits)
    loaded = load_edited(tmp_path / f"resnet.{fmt}")
    assert_same_tensors(loaded.state_dict(), state(model))
    # Memory as the allocator or torch.save gives it: aligned for vectorised kernels.
    misaligned = [n for n, t in loaded.state_dict().items() if t.numel() and t.data_ptr() % 64]
    assert misaligned == []
    model.eval()
    loaded.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


# --- what cannot be loaded -------------------------------------------------------------------


@pytest.fixture
def wide(tmp_path: Path, models_file: Path) -> tuple[Path, nn.Module, Source]:
    """WideList(n=3) with two edits, saved with its recipe."""
    source = resolve_source(f"{models_file}:WideList", {"n": 3})
    model, edits = edited(
        source, [SetTrainable("layers.0", trainable=False), Replace("layers.1", "nn.Linear(2, 4)")]
    )
    weights = tmp_path / "wide.pt"
    save_edited(model, weights, source, SEED, edits)
    return weights, model, source


def test_kwargs_are_recorded_and_used(wide: tuple[Path, nn.Module, Source]) -> None:
    weights, model, source = wide
    assert read_recipe(recipe_file(weights))["source"]["kwargs"] == {"n": "3"}
    loaded = load_edited(weights, source=source.spec)
    assert len(submodule(loaded, "layers", nn.ModuleList)) == 3
    assert submodule(loaded, "layers.1", nn.Linear).out_features == 4
    assert_same_model(loaded, model)


def change_recipe(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, Path], None]:
    def apply(weights: Path, recipe: Path) -> None:
        data = json.loads(recipe.read_text())
        change(data)
        recipe.write_text(json.dumps(data))

    return apply


def retrain_weights(weights: Path, recipe: Path) -> None:
    """`torch.save(model.state_dict(), path)` after some training, over the saved file."""
    tensors = torch.load(weights, weights_only=True)
    tensors["layers.2.bias"] += 1
    torch.save(tensors, weights)


# What breaks the pair returns what it returns (`write_text` a count): it is not used.
BROKEN: dict[str, tuple[Callable[[Path, Path], object], str]] = {
    "missing recipe": (lambda w, r: r.unlink(), "no recipe at {recipe}"),
    "not json": (
        lambda w, r: r.write_text("{not json"),
        "{recipe} is not valid JSON (Expecting property name",
    ),
    "not an object": (lambda w, r: r.write_text("[1, 2]"), "{recipe} is not a modelbrowse recipe"),
    "not utf-8": (lambda w, r: r.write_bytes(b"\xff\xfe\x00"), "{recipe} is not UTF-8 text"),
    "wrong format": (
        change_recipe(lambda d: d.update(format="other-tool")),
        "{recipe} is not a modelbrowse recipe",
    ),
    "newer version": (
        change_recipe(lambda d: d.update(version=2)),
        "{recipe} has recipe version 2; this modelbrowse reads up to 1",
    ),
    "no edits": (change_recipe(lambda d: d.pop("edits")), "{recipe}: 'edits' is missing"),
    "edits not a list": (
        change_recipe(lambda d: d.update(edits={"op": "delete"})),
        "{recipe}: 'edits' must be a list, not an object",
    ),
    "weights changed": (
        retrain_weights,
        "{weights} is not the file its recipe describes: its sha256 is ",
    ),
    "weights gone": (lambda w, r: w.unlink(), "cannot read {weights}: No such file or directory"),
    "step no longer applies": (
        change_recipe(lambda d: d["edits"][1].update(path="layers.7")),
        "step 2 (replace layers.7 with nn.Linear(2, 4)): layers.7 is not a module",
    ),
    "a path out of the model": (
        change_recipe(lambda d: d["edits"][1].update(path="__class__")),
        "step 2 (replace __class__ with nn.Linear(2, 4)): ",
    ),
    "a spec that is code": (
        change_recipe(lambda d: d["edits"][1].update(spec="__import__('os').system('x')")),
        "step 2 of the recipe is malformed: ",
    ),
    "malformed step": (
        change_recipe(lambda d: d["edits"][0].update(op="explode")),
        "{recipe}: step 1 of the recipe is malformed: 'edits[0].op' is 'explode', not one of "
        "set_trainable, reinit,",
    ),
    "weights do not fit (keys)": (
        change_recipe(lambda d: d["source"]["kwargs"].update(n="2")),
        "the weights do not fit the rebuilt model: Unexpected key(s) in state_dict: "
        '"layers.2.weight", "layers.2.bias".',
    ),
    "weights do not fit (shapes)": (
        change_recipe(lambda d: d["edits"].pop(1)),
        "the weights do not fit the rebuilt model: size mismatch for layers.1.weight",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_what_cannot_be_loaded_is_one_line(wide: tuple[Path, nn.Module, Source], case: str) -> None:
    weights, _, source = wide
    recipe = recipe_file(weights)
    breaking, expected = BROKEN[case]
    breaking(weights, recipe)
    with pytest.raises(RecipeError) as excinfo:
        load_edited(weights, source=source.spec)
    assert one_line(excinfo).startswith(expected.format(recipe=recipe, weights=weights))


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_a_flipped_data_byte_is_caught_naming_both_hashes(tmp_path: Path, fmt: str) -> None:
    """Neither format checks its data on read: the recipe's sha256 does."""
    from modelbrowse.core.recipe import check_recipe_beside
    from modelbrowse.core.saving.hashing import file_sha256

    source = resolve_source("alexnet")
    model = source.build_real(0)
    weights = tmp_path / f"edited.{fmt}"
    save_edited(model, weights, source, 0, [])
    assert check_recipe_beside(weights) is None
    expected = file_sha256(weights)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the largest tensor's values
    weights.write_bytes(bytes(data))
    actual = file_sha256(weights)
    message = check_recipe_beside(weights)
    assert message is not None
    assert f"its sha256 is {actual}, the recipe says {expected}" in message
    with pytest.raises(RecipeError) as excinfo:
        load_edited(weights)
    assert f"its sha256 is {actual}, the recipe says {expected}" in one_line(excinfo)
