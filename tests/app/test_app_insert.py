"""Inserting from the keyboard (Pilot): after or before a module, at either end of a list,
and a child of any module with any name `add_module` takes, as the tutorials do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from textual.pilot import Pilot

from modelbrowse.core.recipe import load_edited, read_recipe
from tests.app_support import open_app, paste, screen_text, squeeze, wait_for, wait_for_text
from tests.model_support import submodule

SIZE = (130, 40)


async def goto(pilot: Pilot[None], path: str) -> None:
    await pilot.press("colon", *path, "enter")
    await wait_for(pilot, lambda: f"│ {path} │" in squeeze(screen_text(pilot.app)))


async def test_the_tutorials_add_module_under_a_leaf_and_an_insert_at_0_then_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`alexnet.features[11].add_module('100', nn.BatchNorm2d(256))`, then a module before
    features.0; both are written with the weights and come back from the recipe."""
    monkeypatch.chdir(tmp_path)
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model
        await goto(pilot, "features.11")  # a ReLU: a leaf
        await pilot.press("a")
        screen = await wait_for_text(pilot, "insert a module, from features.11")
        assert "● after features.11, in features" in screen
        assert "○ before features.11, in features" in screen
        assert "○ inside features.11, as a child with a name" in screen
        assert "name of the new child" not in screen  # no name for a place in the list
        await pilot.press("down", "down")
        screen = await wait_for_text(pilot, "● inside features.11, as a child with a name")
        assert "○ after features.11" in screen
        await pilot.press(*"100", "enter")  # a name PyTorch accepts
        await paste(pilot, "nn.BatchNorm2d(256)")
        await pilot.press("enter")
        screen = await wait_for_text(pilot, "add nn.BatchNorm2d(256) as features.11.100")
        assert "not a valid" not in screen
        assert isinstance(model.get_submodule("features.11.100"), torch.nn.BatchNorm2d)
        assert "├─ ▶ 11 ReLU 512" in screen  # a leaf no more
        assert "children 1 module" in screen

        await goto(pilot, "features.0")
        await pilot.press("a")
        await wait_for_text(pilot, "● after features.0, in features")
        await pilot.press("down")
        await wait_for_text(pilot, "● before features.0, in features")
        await paste(pilot, "nn.BatchNorm2d(3)")
        await pilot.press("enter")
        screen = await wait_for_text(pilot, "insert nn.BatchNorm2d(3) into features at 0")
        assert "├─ ▶ 0 BatchNorm2d 6" in screen and "├─ ▶ 1 Conv2d 23.3K" in screen
        assert isinstance(model.get_submodule("features.0"), torch.nn.BatchNorm2d)

        await pilot.press("L")
        screen = await wait_for_text(pilot, "Edit log: 2 edits")
        assert "model.features[11].add_module('100', nn.BatchNorm2d(256))" in screen
        assert "model.features.insert(0, nn.BatchNorm2d(3))" in screen
        await pilot.press("escape")

        await pilot.press("w")
        await wait_for_text(pilot, "write the weights")
        await pilot.press("enter")
        await wait_for_text(pilot, "wrote alexnet-edited.pt")
        expected = model.state_dict()

    recipe = read_recipe(tmp_path / "alexnet-edited.pt.recipe.json")
    assert [(e["op"], e["path"]) for e in recipe["edits"]] == [
        ("add_module", "features.11"),
        ("insert", "features"),
    ]
    loaded = load_edited(tmp_path / "alexnet-edited.pt")
    assert isinstance(loaded.get_submodule("features.12.100"), torch.nn.BatchNorm2d)
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())


async def test_a_list_offers_its_start_and_end(models_file: Path) -> None:
    async with open_app(f"{models_file}:WideList", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        layers = submodule(app.session.history.model, "layers", torch.nn.ModuleList)
        await goto(pilot, "layers")
        await pilot.press("a")
        screen = await wait_for_text(pilot, "● at the end of layers")
        assert "○ at the start of layers" in screen
        await pilot.press("up", "up")  # round to the last place, then back one
        await wait_for_text(pilot, "● at the start of layers")
        await paste(pilot, "nn.Tanh()")
        await pilot.press("enter")
        await wait_for_text(pilot, "insert nn.Tanh() into layers at 0")
        assert isinstance(layers[0], torch.nn.Tanh) and len(layers) == 251
