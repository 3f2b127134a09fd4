"""AlexNet saved with its recipe: `load_edited` gives it back, `replay_recipe` makes it again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from modelbrowse.core.edits.base import Edit
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.edits.modules import AddModule, Insert, Replace
from modelbrowse.core.edits.reinit import Reinit
from modelbrowse.core.recipe import (
    RecipeError,
    load_edited,
    read_recipe,
    replay_recipe,
    save_edited,
)
from modelbrowse.core.saving.weights import SaveReport, read_weights
from modelbrowse.core.sources.base import Source, resolve_source
from tests.edit_support import flags, state
from tests.saving_support import FORMATS, assert_same_tensors, files_in, one_line, sha256

INIT_SEED = 1234


def edited(source: Source, edits: list[Edit], seed: int = INIT_SEED) -> nn.Module:
    history = EditHistory(source.build_real(seed))
    for edit in edits:
        history.apply(edit)
    return history.model


@pytest.fixture(scope="module")
def edited_alexnet() -> tuple[Source, nn.Module, list[Edit]]:
    """AlexNet from a known seed, edited as in the app; the edits draw their own seeds."""
    source = resolve_source("alexnet")
    edits: list[Edit] = [
        Replace("classifier.6", "nn.Linear(4096, 10)"),
        SetTrainable("features", trainable=False),
        Reinit("classifier.6", "xavier_uniform"),
    ]
    return source, edited(source, edits), edits


@pytest.fixture(scope="module", params=FORMATS)
def saved_alexnet(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    edited_alexnet: tuple[Source, nn.Module, list[Edit]],
) -> tuple[Path, SaveReport]:
    source, model, edits = edited_alexnet
    path = tmp_path_factory.mktemp("alexnet") / f"alexnet-edited.{request.param}"
    return path, save_edited(model, path, source, INIT_SEED, edits)


def test_load_edited_gives_alexnet_back(
    edited_alexnet: tuple[Source, nn.Module, list[Edit]], saved_alexnet: tuple[Path, SaveReport]
) -> None:
    _, model, _ = edited_alexnet
    path, report = saved_alexnet
    assert report.tensors == 16 and report.params == 57_044_810

    loaded = load_edited(path)
    assert_same_tensors(loaded.state_dict(), state(model))
    assert flags(loaded) == flags(model)
    head = loaded.get_submodule("classifier.6")
    assert isinstance(head, nn.Linear)
    assert head.out_features == 10
    assert not loaded.get_parameter("features.0.weight").requires_grad
    assert head.weight.requires_grad


def test_replay_recipe_makes_the_same_file(
    edited_alexnet: tuple[Source, nn.Module, list[Edit]],
    saved_alexnet: tuple[Path, SaveReport],
    tmp_path: Path,
) -> None:
    _, model, _ = edited_alexnet
    path, report = saved_alexnet
    recipe = path.with_name(path.name + ".recipe.json")
    output = tmp_path / path.name

    replayed = replay_recipe(recipe, resolve_source("AlexNet"), output)
    assert replayed.sha256 == sha256(output)
    if report.format == "pt":
        assert sha256(output) == sha256(path) == report.sha256  # byte for byte
    assert_same_tensors(read_weights(output), read_weights(path))
    assert files_in(tmp_path) == sorted([output.name, output.name + ".recipe.json"])

    mine, theirs = read_recipe(recipe), read_recipe(output.with_name(output.name + ".recipe.json"))
    assert theirs["source"] == mine["source"]
    assert theirs["edits"] == mine["edits"]
    assert theirs["frozen"] == mine["frozen"]
    assert theirs["weights"] == mine["weights"] | {"sha256": replayed.sha256}
    assert flags(load_edited(output)) == flags(model)


# --- replay, small models --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_replay_shared_net_from_another_directory(
    tmp_path: Path, models_file: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    monkeypatch.chdir(models_file.parent)
    source = resolve_source(f"{models_file.name}:SharedNet")
    edits: list[Edit] = [
        Reinit("encoder", "kaiming_normal"),
        SetTrainable("embed", trainable=False),
        Replace("decoder.act", "nn.GELU()"),
    ]
    model = edited(source, edits)
    report = save_edited(model, tmp_path / f"shared.{fmt}", source, INIT_SEED, edits)

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = resolve_source(f"{models_file.resolve()}:SharedNet")
    replayed = replay_recipe(f"../shared.{fmt}.recipe.json", again, "out." + fmt)
    out = tmp_path / "elsewhere" / f"out.{fmt}"
    if fmt == "pt":
        assert replayed.sha256 == report.sha256
    found = read_weights(out)
    assert_same_tensors(found, state(model))
    loaded = load_edited(out, source=again.spec)
    head = loaded.get_parameter("head.weight")
    assert head is loaded.get_parameter("embed.weight") and not head.requires_grad
    assert isinstance(loaded.get_submodule("decoder.act"), nn.GELU)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_tutorials_add_module_and_an_insert_at_0_save_and_come_back(
    tmp_path: Path, fmt: str
) -> None:
    """`alexnet.features[11].add_module('100', nn.BatchNorm2d(256))`, the custom module's
    plain parameters re-initialised, and an insert before features.0."""
    source = resolve_source("alexnet")
    edits: list[Edit] = [
        AddModule("features.11", "100", "nn.BatchNorm2d(256)"),
        Insert("features", 0, "nn.BatchNorm2d(3)"),
        Reinit("features.12", "normal(std=0.01)"),
    ]
    model = edited(source, edits)
    path = tmp_path / f"alex.{fmt}"
    save_edited(model, path, source, INIT_SEED, edits)
    assert "features.12.100.running_var" in read_weights(path)

    loaded = load_edited(path)
    assert isinstance(loaded.get_submodule("features.0"), nn.BatchNorm2d)
    assert isinstance(loaded.get_submodule("features.12.100"), nn.BatchNorm2d)
    assert_same_tensors(loaded.state_dict(), state(model))
    output = tmp_path / f"again.{fmt}"
    replay_recipe(path.with_name(path.name + ".recipe.json"), source, output)
    assert_same_tensors(read_weights(output), read_weights(path))


@pytest.fixture
def resnet_recipe(tmp_path: Path) -> Path:
    source = resolve_source("resnet18")
    edits: list[Edit] = [Replace("fc", "nn.Linear(512, 10)")]
    save_edited(edited(source, edits), tmp_path / "resnet.pt", source, INIT_SEED, edits)
    return tmp_path / "resnet.pt.recipe.json"


def test_a_recipe_for_another_source_writes_nothing(resnet_recipe: Path, tmp_path: Path) -> None:
    before = files_in(tmp_path)
    with pytest.raises(RecipeError) as excinfo:
        replay_recipe(resnet_recipe, resolve_source("alexnet"), tmp_path / "out.pt")
    message = one_line(excinfo)
    assert "'resnet18'" in message and "'alexnet'" in message
    assert message == (
        "the recipe was written for 'resnet18' (spec 'resnet18'), not 'alexnet' (spec 'alexnet')"
    )
    assert files_in(tmp_path) == before


def test_a_recipe_with_other_kwargs_writes_nothing(resnet_recipe: Path, tmp_path: Path) -> None:
    before = files_in(tmp_path)
    with pytest.raises(RecipeError) as excinfo:
        replay_recipe(
            resnet_recipe, resolve_source("resnet18", {"num_classes": 5}), tmp_path / "x.pt"
        )
    assert "kwargs" in one_line(excinfo) and "'num_classes': '5'" in one_line(excinfo)
    assert files_in(tmp_path) == before


@pytest.mark.parametrize("existing", [False, True], ids=["new", "over-a-file"])
def test_a_failing_step_writes_nothing(tmp_path: Path, models_file: Path, existing: bool) -> None:
    source = resolve_source(f"{models_file}:SharedNet")
    edits: list[Edit] = [
        SetTrainable("encoder", trainable=False),
        Reinit("head", "xavier_normal"),
        Replace("decoder.act", "nn.Tanh()"),
    ]
    save_edited(edited(source, edits), tmp_path / "shared.pt", source, INIT_SEED, edits)
    recipe = tmp_path / "shared.pt.recipe.json"
    data = json.loads(recipe.read_text())
    data["edits"][1]["path"] = "tail"
    recipe.write_text(json.dumps(data))
    output = tmp_path / "out" / "replayed.pt"
    output.parent.mkdir()
    if existing:
        output.write_bytes(b"an older file")

    with pytest.raises(RecipeError) as excinfo:
        replay_recipe(recipe, source, output)
    assert one_line(excinfo).startswith("step 2 (re-initialise tail with xavier_normal (seed "), (
        one_line(excinfo)
    )
    assert "no parameter or buffer at 'tail'" in one_line(excinfo)
    assert files_in(output.parent) == (["replayed.pt"] if existing else [])
    if existing:
        assert output.read_bytes() == b"an older file"


def test_a_module_instance_cannot_be_replayed(tmp_path: Path, models_file: Path) -> None:
    source = resolve_source(f"{models_file}:INSTANCE")
    model = source.build_real()
    save_edited(model, tmp_path / "inst.pt", source, None, [])
    assert read_recipe(tmp_path / "inst.pt.recipe.json")["source"]["reproducible"] is False
    with pytest.raises(RecipeError) as excinfo:
        replay_recipe(tmp_path / "inst.pt.recipe.json", source, tmp_path / "out.pt")
    assert "module instance" in one_line(excinfo)
    assert not (tmp_path / "out.pt").exists()


def test_replay_without_a_recipe(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as excinfo:
        replay_recipe(tmp_path / "none.json", resolve_source("alexnet"), tmp_path / "out.pt")
    assert one_line(excinfo) == f"no recipe at {tmp_path / 'none.json'}"
    assert files_in(tmp_path) == []


def test_the_random_state_is_left_alone(tmp_path: Path, models_file: Path) -> None:
    """Replaying draws from its own seeds, not from (or into) the caller's generator."""
    source = resolve_source(f"{models_file}:SharedNet")
    edits: list[Edit] = [Reinit("encoder", "xavier_uniform"), Replace("head", "nn.Linear(8, 3)")]
    save_edited(edited(source, edits), tmp_path / "s.pt", source, INIT_SEED, edits)
    torch.manual_seed(99)
    expected = torch.rand(3)
    torch.manual_seed(99)
    replay_recipe(tmp_path / "s.pt.recipe.json", source, tmp_path / "again.pt")
    assert torch.equal(torch.rand(3), expected)
