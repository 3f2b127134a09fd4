"""Unsaved edits kept when a signal stops the app, announced next time, opened with --recipe."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from textual.pilot import Pilot

from modelbrowse.core.recipe import read_recipe
from modelbrowse.core.recovery import kept_for, recovery_dir
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions
from tests.app_support import (
    notifications,
    open_app,
    paste,
    screen_text,
    squeeze,
    wait_for,
    wait_for_notification,
    wait_for_text,
    wait_loaded,
)

SIZE = (130, 40)


async def edit_alexnet(pilot: Pilot[None]) -> None:
    """Freeze features, give classifier.6 ten outputs: two unsaved edits."""
    await wait_loaded(pilot)
    await pilot.press("j", "f")
    await wait_for_text(pilot, "frozen")
    await pilot.press("colon", *"classifier.6", "enter")
    await pilot.press("e")
    await wait_for_text(pilot, "replace classifier.6")
    await pilot.press("ctrl+a", "ctrl+k")
    await paste(pilot, "nn.Linear(4096, 10)")
    await pilot.press("enter")
    await wait_for_text(pilot, "2 unsaved edits")


async def test_a_signal_keeps_the_edits_and_the_next_session_reopens_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.argv", ["modelbrowse", "alexnet", "--seed", "4"])
    app = ModelBrowseApp(AppOptions("alexnet", seed=4))
    async with app.run_test(size=SIZE) as pilot:
        await edit_alexnet(pilot)
        app._exit_on_signal(signal.SIGTERM)
        await pilot.pause()
    assert app.return_code == 128 + signal.SIGTERM
    assert app.error_message is not None
    kept = sorted(recovery_dir().glob("*.recipe.json"))
    assert len(kept) == 1
    assert app.error_message == (
        f"stopped by SIGTERM; 2 edits kept: modelbrowse alexnet --seed 4 --recipe {kept[0]} "
        "reopens them"
    )
    assert read_recipe(kept[0])["source"]["init_seed"] == 4

    # The next session of alexnet says so, once.
    again = ModelBrowseApp(AppOptions("alexnet"))
    async with again.run_test(size=SIZE) as pilot:
        text = await wait_for_notification(pilot, "were kept")
        assert "2 unsaved edits of alexnet from a session stopped by SIGTERM" in squeeze(text)
    assert kept_for(resolve_source("alexnet", {}, None)) == []

    # --recipe opens them: applied, unsaved, undone one by one.
    reopened = ModelBrowseApp(AppOptions("alexnet", recipe=str(kept[0])))
    async with reopened.run_test(size=SIZE) as pilot:
        screen = await wait_for_text(pilot, "2 edits from")
        assert "57.0M params (54.6M trainable, 2.5M frozen)" in screen
        assert "2 unsaved edits" in screen
        assert "were kept" not in notifications(reopened)  # the file it opened is not news
        assert reopened.session.init_seed == 4  # the weights the edits were made on
        await pilot.press("u")
        screen = await wait_for_text(pilot, "1 unsaved edit")
        assert "61.1M params" in screen
        await pilot.press("u")
        await wait_for(pilot, lambda: "unsaved" not in squeeze(screen_text(reopened)))


async def test_no_edits_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        app._exit_on_signal(signal.SIGHUP)
        await pilot.pause()
    assert app.error_message == "stopped by SIGHUP"
    assert not recovery_dir().exists()


async def test_a_recipe_of_another_model_is_one_line(tmp_path: Path) -> None:
    app = ModelBrowseApp(AppOptions("alexnet", seed=1))
    async with app.run_test(size=SIZE) as pilot:
        await edit_alexnet(pilot)
        app._exit_on_signal(signal.SIGTERM)
        await pilot.pause()
    kept = next(recovery_dir().glob("*.recipe.json"))

    other = ModelBrowseApp(AppOptions("resnet18", recipe=str(kept)))
    async with other.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: other.return_code is not None)
    assert other.return_code == 2
    assert other.error_message == (
        "the recipe was written for 'alexnet' (spec 'alexnet'), not 'resnet18' (spec 'resnet18')"
    )


async def test_a_step_that_does_not_apply_is_said_and_the_ones_before_stay(
    tmp_path: Path,
) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text(
        '{"format": "modelbrowse-recipe", "version": 1, "frozen": [],'
        ' "source": {"kind": "torchvision", "spec": "alexnet", "kwargs": {}, "weights": null,'
        ' "init_seed": 3},'
        ' "edits": [{"op": "set_trainable", "path": "features", "trainable": false},'
        ' {"op": "set_trainable", "path": "nowhere", "trainable": false}]}'
    )
    app = ModelBrowseApp(AppOptions("alexnet", recipe=str(recipe)))
    async with app.run_test(size=SIZE) as pilot:
        text = await wait_for_notification(pilot, "did not apply")
        assert (
            "step 2 of r.json (freeze nowhere) did not apply: "
            "no parameter or buffer at 'nowhere'; "
            "the 1 before it did"
        ) in text
        await wait_for_text(pilot, "1 unsaved edit")


async def test_a_selection_comes_back_as_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["modelbrowse", "alexnet"])
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("asterisk", *"all-linear", "enter")
        await wait_for_text(pilot, "all-linear: 2 modules")
        await pilot.press("f")
        await wait_for_text(pilot, "1 unsaved edit")
        app._exit_on_signal(signal.SIGHUP)
        await pilot.pause()
    assert app.error_message is not None and "1 edit kept" in app.error_message
    kept = next(recovery_dir().glob("*.recipe.json"))
    assert len(read_recipe(kept)["edits"]) == 2  # the recipe lists them one by one

    reopened = ModelBrowseApp(AppOptions("alexnet", recipe=str(kept)))
    async with reopened.run_test(size=SIZE) as pilot:
        screen = await wait_for_text(pilot, "1 edit from")
        assert "1 unsaved edit" in screen
        assert "54.5M frozen" in screen
        await pilot.press("u")  # one press undoes the whole selection, as in the session
        await wait_for(pilot, lambda: "unsaved" not in squeeze(screen_text(reopened)))
        assert "(61.1M trainable, 0 frozen)" in squeeze(screen_text(reopened))


async def test_a_garbage_recovery_file_neither_stops_the_app_nor_drops_the_recipe(
    tmp_path: Path,
) -> None:
    folder = recovery_dir()
    folder.mkdir(parents=True)
    (folder / "deep.recipe.json").write_text('{"a": ' + "[" * 50_000 + "]" * 50_000 + "}")
    recipe = tmp_path / "r.json"
    recipe.write_text(
        '{"format": "modelbrowse-recipe", "version": 1, "frozen": [],'
        ' "source": {"kind": "torchvision", "spec": "alexnet", "kwargs": {}, "weights": null,'
        ' "init_seed": 3},'
        ' "edits": [{"op": "set_trainable", "path": "features", "trainable": false}]}'
    )
    app = ModelBrowseApp(AppOptions("alexnet", recipe=str(recipe)))
    async with app.run_test(size=SIZE) as pilot:
        text = await wait_for_notification(pilot, "skipped")
        assert "skipped deep.recipe.json in the recovery folder: " in squeeze(text)
        assert "is nested too deeply" in squeeze(text)
        await wait_for_text(pilot, "1 edit from r.json applied")
    assert app.return_code is None or app.return_code == 0
