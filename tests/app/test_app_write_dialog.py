"""The write dialog as a new user meets it (Pilot): a typed path is written exactly as typed,
keys typed before the dialog is up go into it, a doubled extension is questioned."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from textual import events
from textual.keys import _character_to_key
from textual.pilot import Pilot
from textual.widgets import Input

from modelbrowse.core.saving.names import extensions_text
from modelbrowse.tui.screens.path_dialog import PathDialog
from tests.app_support import (
    open_app,
    screen_text,
    squeeze,
    unwrapped,
    wait_for,
    wait_for_text,
    widget_text,
)

SIZES = [(80, 24), (120, 40)]


async def type_at_once(pilot: Pilot[None], *keys: str) -> None:
    """Every key queued before the app handles the first, as a terminal sends a fast typist's
    keys or a paste: Pilot's `press` lets the app go idle between keys, which hides races."""
    for key in keys:
        if len(key) == 1:
            name = key if key.isalnum() else _character_to_key(key)
            pilot.app.post_message(events.Key(name, key))
        else:
            pilot.app.post_message(events.Key(key, None))
    await pilot.pause()


def dialog_value(pilot: Pilot[None]) -> str:
    screen = pilot.app.screen
    assert isinstance(screen, PathDialog), screen
    return screen.query_one(Input).value


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
async def test_w_then_a_path_typed_at_once_writes_exactly_that_path(
    size: tuple[int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "x" / "alex10.safetensors"
    target.parent.mkdir()
    async with open_app("alexnet", size=size) as (app, pilot):
        await type_at_once(pilot, "w", *str(target))
        await wait_for(pilot, lambda: isinstance(app.screen, PathDialog))
        await wait_for(pilot, lambda: dialog_value(pilot) == str(target))
        assert "filter '" not in squeeze(screen_text(app))  # the `/`s opened no filter
        await pilot.press("enter")
        await wait_for_text(pilot, "wrote")
        shown = app.session.history.model.state_dict() if app.session.history else {}
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "alex10.safetensors",
        "alex10.safetensors.recipe.json",
    ]
    written = load_file(target)  # a safetensors file, not a torch zip under its name
    assert torch.equal(written["classifier.6.bias"], shown["classifier.6.bias"])


async def test_ctrl_u_clears_the_whole_line_then_the_typed_path_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_file: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_app(f"{models_file}:SharedNet", size=(80, 24)) as (_app, pilot):
        await pilot.press("w")
        await wait_for_text(pilot, "sharednet-edited.pt")
        await type_at_once(pilot, "ctrl+u", *"a.pt")
        await wait_for(pilot, lambda: dialog_value(pilot) == "a.pt")
        await pilot.press("enter")
        await wait_for_text(pilot, "wrote a.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "a.pt.recipe.json"]
    assert "embed.weight" in torch.load(tmp_path / "a.pt", weights_only=True)


@pytest.mark.parametrize(
    ("typed", "question"),
    [
        ("x.safetensors.pt", "x.safetensors.pt: only .pt counts, so it would be a torch.save zip"),
        ("a.pt.pt", "a.pt.pt ends in .pt twice"),
    ],
)
async def test_a_doubled_extension_is_asked_about_before_anything_is_written(
    typed: str,
    question: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    models_file: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_app(f"{models_file}:SharedNet", size=(80, 24)) as (app, pilot):
        await type_at_once(pilot, "w", *typed, "enter")
        await wait_for_text(pilot, "enter again writes it so")
        assert unwrapped(question) in unwrapped(widget_text(app, "#dialog-error"))
        await pilot.pause(0.3)
        assert list(tmp_path.iterdir()) == []
        assert isinstance(app.screen, PathDialog)
        await pilot.press("enter")
        await wait_for_text(pilot, f"wrote {typed}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [typed, f"{typed}.recipe.json"]


async def test_the_help_names_the_extensions_the_error_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_file: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    listed = ".pt, .pth, .bin, .ckpt or .safetensors"
    assert extensions_text() == listed
    async with open_app(f"{models_file}:SharedNet", size=(120, 40)) as (_app, pilot):
        await pilot.press("question_mark", "end")  # w is near the help's foot
        screen = await wait_for_text(pilot, "write the weights")
        assert f"write the weights ({listed})" in screen
        await pilot.press("escape", "w")
        await wait_for_text(pilot, "sharednet-edited.pt")
        await type_at_once(pilot, "ctrl+u", *"w.txt", "enter")
        screen = await wait_for_text(pilot, "unknown extension")
        assert f"w.txt: unknown extension '.txt'; use {listed}" in screen
    assert list(tmp_path.iterdir()) == []


async def test_keys_typed_while_a_dialog_is_still_being_built_go_into_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_file: Path
) -> None:
    """A dialog that opens late (a busy app): the keys reach the screen before its input has
    the focus. Opened and typed into before the app runs a step, so that nothing is mounted."""
    from modelbrowse.tui.screens.dialogs import SpecDialog

    monkeypatch.chdir(tmp_path)
    async with open_app(f"{models_file}:SharedNet", size=(80, 24)) as (app, pilot):
        app.action_save()
        await type_at_once(pilot, *"/tmp/late.pt")
        await wait_for(pilot, lambda: dialog_value(pilot) == "/tmp/late.pt")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, PathDialog))

        await pilot.press("colon", *"encoder", "enter")
        await wait_for_text(pilot, "in_features=8")
        app.action_replace()
        await type_at_once(pilot, *"nn.Linear(8, 3)")
        await wait_for(pilot, lambda: isinstance(app.screen, SpecDialog))
        spec = app.screen.query_one("#spec", Input)
        await wait_for(pilot, lambda: spec.value == "nn.Linear(8, 3)")
