"""Writing from the app (Pilot): the dialog, confirmations, the status line, the file on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from textual.pilot import Pilot
from torch import nn

from modelbrowse.core.recipe import load_edited, read_recipe
from modelbrowse.core.saving.weights import SaveError
from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.cli import main
from modelbrowse.tui.options import AppOptions
from tests.app_support import (
    open_app,
    paste,
    screen_text,
    settle,
    squeeze,
    wait_for,
    wait_for_text,
    wait_loaded,
)
from tests.model_support import submodule
from tests.saving_support import sha256

SIZE = (130, 40)


async def goto(pilot: Pilot[None], path: str) -> None:
    await pilot.press("colon", *path, "enter")
    await wait_for(pilot, lambda: f"│ {path} │" in squeeze(screen_text(pilot.app)))


async def open_save_dialog(pilot: Pilot[None]) -> str:
    await pilot.press("w")
    return await wait_for_text(pilot, "write the weights")


async def test_done_means_on_alexnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await goto(pilot, "classifier.6")
        await pilot.press("e")
        await wait_for_text(pilot, "replace classifier.6")
        await pilot.press("ctrl+a", "ctrl+k")
        await paste(pilot, "nn.Linear(4096, 10)")
        await pilot.press("enter")
        await wait_for_text(pilot, "output (1, 10)")
        await goto(pilot, "features")
        await pilot.press("f")
        await wait_for_text(pilot, "2 unsaved edits")

        screen = await open_save_dialog(pilot)
        assert "alexnet-edited.pt" in screen
        await pilot.press("enter")
        screen = await wait_for_text(pilot, "wrote alexnet-edited.pt (16 tensors, 57.0M params")
        assert "alexnet-edited.pt.recipe.json" in screen
        assert "unsaved" not in screen
        assert app.session.history is not None
        shown = app.session.history.model

        # In the training script: one line.
        model = load_edited(tmp_path / "alexnet-edited.pt")
        assert submodule(model, "classifier.6", nn.Linear).out_features == 10
        assert all(not p.requires_grad for p in model.get_submodule("features").parameters())
        assert all(p.requires_grad for p in model.get_submodule("classifier").parameters())
        expected = shown.state_dict()
        loaded = model.state_dict()
        assert loaded.keys() == expected.keys()
        for key, tensor in expected.items():
            assert torch.equal(loaded[key], tensor), key
        # A plain torch.load works too.
        plain = torch.load(tmp_path / "alexnet-edited.pt", weights_only=True)
        assert plain["classifier.6.weight"].shape == (10, 4096)
        recipe = read_recipe(tmp_path / "alexnet-edited.pt.recipe.json")
        assert recipe["source"]["spec"] == "alexnet"
        assert recipe["source"]["init_seed"] == app.session.init_seed
        assert [e["op"] for e in recipe["edits"]] == ["replace", "set_trainable"]

        # q no longer asks: everything is saved.
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)

    # Headless, the recipe gives the same bytes.
    recipe_file = str(tmp_path / "alexnet-edited.pt.recipe.json")
    assert main(["alexnet", "--recipe", recipe_file, "--output", "again.pt"]) == 0
    assert sha256(tmp_path / "again.pt") == sha256(tmp_path / "alexnet-edited.pt")
    assert (tmp_path / "again.pt.recipe.json").exists()


async def test_an_existing_file_needs_y(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_file: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "sharednet-edited.pt"
    target.write_bytes(b"precious")
    async with open_app(f"{models_file}:SharedNet", size=SIZE) as (app, pilot):
        await open_save_dialog(pilot)
        await pilot.press("enter")
        await wait_for_text(pilot, "sharednet-edited.pt exists. Overwrite it?")
        await pilot.press("enter")  # enter alone never overwrites
        await wait_for_text(pilot, "press y to confirm, n to go back")
        await pilot.press("n")
        await wait_for(pilot, lambda: "Overwrite" not in screen_text(app))
        await settle(pilot)  # a save, had the answer started one, would have finished
        assert target.read_bytes() == b"precious"

        await open_save_dialog(pilot)
        await pilot.press("enter")
        await wait_for_text(pilot, "exists. Overwrite it?")
        await pilot.press("y")
        await wait_for_text(pilot, "wrote sharednet-edited.pt")
        assert torch.load(target, weights_only=True)["embed.weight"].shape == (10, 8)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("weights.txt", "unknown extension '.txt'; use .pt, .pth, .bin, .ckpt or .safetensors"),
        ("no/such/dir/w.pt", "the directory no/such/dir does not exist"),
        ("adir", "adir is a directory"),
        ("", "type a path for the weights"),
    ],
)
async def test_a_bad_path_is_an_inline_error(
    typed: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_file: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    async with open_app(f"{models_file}:SharedNet", size=SIZE) as (app, pilot):
        await open_save_dialog(pilot)
        await pilot.press("ctrl+a", "ctrl+k", *typed, "enter")
        screen = await wait_for_text(pilot, message)
        assert "write the weights" in screen  # the dialog stays open to fix the path
        await pilot.press("escape")
        await wait_for(pilot, lambda: "write the weights" not in screen_text(app))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]


async def test_a_failed_save_keeps_the_edits_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_file: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    def full_disk(*args: object, **kwargs: object) -> None:
        raise SaveError("cannot write x.safetensors: no space left on device")

    monkeypatch.setattr("modelbrowse.core.recipe.stage_weights", full_disk)
    async with open_app(f"{models_file}:SharedNet", size=SIZE) as (_app, pilot):
        await goto(pilot, "encoder")
        await pilot.press("f")
        await wait_for_text(pilot, "1 unsaved edit")
        await open_save_dialog(pilot)
        await pilot.press("ctrl+a", "ctrl+k", *"x.safetensors", "enter")
        screen = await wait_for_text(pilot, "not saved: cannot write x.safetensors: no space left")
        assert "1 unsaved edit" in screen
        # The user can try again at once, elsewhere.
        await open_save_dialog(pilot)
    assert list(tmp_path.iterdir()) == []


async def test_the_file_the_model_came_from_needs_two_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_file: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "sharednet-edited.pt"
    target.write_bytes(b"the original checkpoint")
    app = ModelBrowseApp(AppOptions(f"{models_file}:SharedNet"))
    monkeypatch.setattr(app.session, "protected_paths", lambda: {target.resolve()})
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await open_save_dialog(pilot)
        await pilot.press("enter")
        await wait_for_text(pilot, "is the checkpoint this model was opened from. Replace it?")
        await pilot.press("y")
        await wait_for_text(pilot, "with the edited weights? It cannot be undone.")
        await pilot.press("n")
        await wait_for(pilot, lambda: "cannot be undone" not in squeeze(screen_text(app)))
        await settle(pilot)  # a save, had the answer started one, would have finished
        assert target.read_bytes() == b"the original checkpoint"

        await open_save_dialog(pilot)
        await pilot.press("enter")
        await wait_for_text(pilot, "is the checkpoint this model was opened from")
        await pilot.press("y")
        await wait_for_text(pilot, "It cannot be undone.")
        await pilot.press("y")
        await wait_for_text(pilot, "wrote sharednet-edited.pt")
    assert torch.load(target, weights_only=True)["embed.weight"].shape == (10, 8)
