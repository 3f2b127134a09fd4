"""The command palette (ctrl+p): every action with its keys, and the ones without a key."""

from __future__ import annotations

from pathlib import Path

from textual.binding import Binding
from textual.theme import BUILTIN_THEMES

from modelbrowse.tui.options import AppOptions
from modelbrowse.tui.palette import APP_ACTIONS, TREE_ACTIONS
from tests.app_support import (
    notifications,
    open_app,
    screen_text,
    settle,
    squeeze,
    wait_for,
    wait_for_text,
)

SIZE = (130, 40)


async def test_every_action_is_in_the_palette_with_its_keys() -> None:
    async with open_app("alexnet", size=SIZE) as (app, _pilot):
        titles = [c.title for c in app.get_system_commands(app.screen)]
        bound = {b.action for b in Binding.make_bindings(app.BINDINGS)} - {"ctrl_c"}
        assert bound <= set(APP_ACTIONS)  # no key without its palette entry
        assert "Freeze or unfreeze  (f)" in titles
        assert "Quit  (q, ^q)" in titles
        assert "Go to  (:)" in titles
        assert "Copy path  (no key)" in titles
        assert "Theme" in titles  # Textual's own
        assert "Quit" not in titles  # Textual's, which would not ask about unsaved edits
        assert len(titles) >= len(APP_ACTIONS) + len(TREE_ACTIONS) + 2


async def test_a_palette_command_runs_its_action() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("ctrl+p")
        await pilot.press(*"freeze")
        await wait_for_text(pilot, "Freeze or unfreeze (f)")
        await pilot.press("enter")
        await wait_for_text(pilot, "freeze the whole model")
        assert "1 unsaved edit" in squeeze(screen_text(app))

        await pilot.press("colon", *"features.3", "enter")
        await wait_for(pilot, lambda: "│ features.3 │" in squeeze(screen_text(app)))
        await pilot.press("ctrl+p", *"copy path")
        await wait_for_text(pilot, "Copy path (no key)")
        await pilot.press("enter")
        await wait_for_text(pilot, "copied: features.3")


async def test_shift_space_opens_a_small_subtree_and_only_one_level_of_a_big_one() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("colon", *"classifier", "enter")
        await wait_for(pilot, lambda: "│ classifier │" in squeeze(screen_text(app)))
        await pilot.press("shift+space")
        screen = await wait_for_text(pilot, "◆ weight (4096, 9216)")  # classifier.1's, opened
        assert "◆ bias (1000,)" in screen  # classifier.6's too
        await pilot.press("shift+space")
        await wait_for(pilot, lambda: "◆ weight" not in screen_text(app))


async def test_shift_space_on_a_big_subtree_opens_one_level_and_says_why(
    models_file: Path,
) -> None:
    async with open_app(AppOptions(f"{models_file}:WideList", kw=["n=1000"]), size=SIZE) as (
        app,
        pilot,
    ):
        await pilot.press("colon", *"layers", "enter")
        await wait_for(pilot, lambda: "│ layers │" in squeeze(screen_text(app)))
        await pilot.press("shift+space")
        await wait_for(pilot, lambda: "opened one level" in notifications(app))
        screen = squeeze(screen_text(app))
        assert "layers[0:100]" in screen
        assert "◆ weight" not in screen


async def test_keys_remapped_in_the_config_work_and_the_palette_shows_them() -> None:
    async with open_app(
        AppOptions("alexnet", keymap={"freeze": "F", "replace": "r,ctrl+e"}), size=SIZE
    ) as (app, pilot):
        await pilot.press("f")
        await settle(pilot)  # the key is handled: had it frozen, the edit would show
        assert "unsaved edit" not in squeeze(screen_text(app))
        await pilot.press("F")
        await wait_for_text(pilot, "freeze the whole model")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Freeze or unfreeze  (F)" in titles
        assert "Replace  (r, ^e)" in titles
        assert "F Freeze" in squeeze(screen_text(app))  # the footer too

        await pilot.press("question_mark")  # and the help screen
        screen = await wait_for_text(pilot, "F freeze / unfreeze the subtree")
        assert "r ^e replace the module" in screen
        assert "j k ↑ ↓ move the cursor" in screen
        assert "f freeze" not in screen
        await pilot.press("end")  # the note at its foot
        await wait_for_text(pilot, "Keys as remapped in the config file")


async def test_the_config_theme_is_used() -> None:
    async with open_app(AppOptions("alexnet", theme="nord"), size=SIZE) as (app, _pilot):
        assert app.theme == "nord"
        nord = BUILTIN_THEMES["nord"].background
        assert nord and app.get_css_variables()["background"].lower() == nord.lower()
