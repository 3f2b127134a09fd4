"""The selector: `*` marks what a pattern hits as it is typed; f, i, e act on every match."""

from __future__ import annotations

from pathlib import Path

import torch

from modelbrowse.core.recipe import read_recipe
from modelbrowse.tui.app import ModelBrowseApp
from tests.app_support import (
    open_app,
    paste,
    screen_text,
    squeeze,
    wait_for,
    wait_for_text,
)

SIZE = (130, 40)


async def test_select_then_freeze_every_match_in_one_undoable_step() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("colon", *"classifier.0", "enter")  # expanded, to see the marks
        await pilot.press("asterisk", *"cls:Lin")
        await wait_for_text(pilot, "cls:Lin: 0 modules, 0 parameters")  # live, as typed
        await pilot.press(*"ear")
        screen = await wait_for_text(pilot, "cls:Linear: 3 modules, 58,631,144 parameters")
        assert "● 1 Linear 37.8M" in screen
        assert "● 0 Dropout" not in screen
        await pilot.press("enter", "f")
        screen = await wait_for_text(pilot, "freeze 3 modules matching cls:Linear")
        assert "(2.5M trainable, 58.6M frozen)" in screen
        assert app.session.history is not None
        assert len(app.session.history.done) == 1
        model = app.session.history.model
        assert not model.get_parameter("classifier.6.weight").requires_grad
        assert model.get_parameter("features.0.weight").requires_grad

        await pilot.press("Y")
        await wait_for_text(
            pilot, "copied target_modules=['classifier.1', 'classifier.4', 'classifier.6']"
        )
        await pilot.press("L")  # the edit log keeps what was copied
        screen = await wait_for_text(pilot, "Selections copied with Y, for PEFT:")
        log = screen.split("Selections copied with Y, for PEFT:")[1]
        assert "# cls:Linear" in log
        assert "target_modules=['classifier.1', 'classifier.4', 'classifier.6']" in log
        await pilot.press("escape")
        await pilot.press("u")
        await wait_for_text(pilot, "undid: freeze 3 modules matching cls:Linear")
        assert all(p.requires_grad for p in model.parameters())
        await pilot.press("escape")
        await wait_for(pilot, lambda: "●" not in screen_text(app))


async def test_replace_every_match_and_the_recipe_records_each(tmp_path: Path) -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("m", *"cls:Dropout", "enter")
        await wait_for_text(pilot, "cls:Dropout: 2 modules")
        await pilot.press("e")
        await wait_for_text(pilot, "replace 2 modules matching cls:Dropout")
        await paste(pilot, "nn.Identity()")
        await pilot.press("enter")
        await wait_for_text(pilot, "replace with nn.Identity() 2 modules matching cls:Dropout")
        assert app.session.history is not None
        model = app.session.history.model
        assert isinstance(model.get_submodule("classifier.0"), torch.nn.Identity)
        assert isinstance(model.get_submodule("classifier.3"), torch.nn.Identity)

        from modelbrowse.core.recipe import save_edited

        assert app.session.source is not None
        out = tmp_path / "edited.pt"
        save_edited(model, out, app.session.source, app.session.init_seed, app.session.history.done)
        ops = [(e["op"], e["path"]) for e in read_recipe(f"{out}.recipe.json")["edits"]]
        assert ops == [("replace", "classifier.0"), ("replace", "classifier.3")]


async def test_a_bad_selector_is_an_inline_error() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("asterisk", *"re:[", "enter")
        await wait_for_text(pilot, "not a regular expression")
        assert "unterminated character set" in squeeze(screen_text(app))
        assert app.session.selection.current is None


async def test_a_selection_reaching_a_tie_asks_once(models_file: Path) -> None:
    async with open_app(f"{models_file}:SharedNet", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model
        await pilot.press("asterisk", *"cls:Linear", "enter", "e")
        await wait_for_text(pilot, "replace 3 modules matching cls:Linear")
        await paste(pilot, "nn.Identity()")
        await pilot.press("enter")
        await wait_for_text(pilot, "head shares objects with embed.weight: this unties them. Go")
        await pilot.press("n")
        await wait_for_text(pilot, "nothing changed")
        assert model.get_parameter("head.weight") is model.get_parameter("embed.weight")

        await pilot.press("escape", "asterisk", *"re:embed|head", "enter", "i")
        await wait_for_text(pilot, "xavier_uniform")
        await pilot.press("enter")  # both sides of the tie: nothing to ask
        await wait_for_text(pilot, "re-initialise with reset_parameters 2 modules matching")
        assert len(app.session.history.done) == 1

        await pilot.press("escape", "asterisk", *"head", "enter", "i")
        await wait_for_text(pilot, "xavier_uniform")
        await pilot.press("enter")
        await wait_for_text(pilot, "head is tied to embed.weight: re-initialising changes both")
        await pilot.press("y")
        await wait_for_text(pilot, "(head is tied to embed.weight: re-initialising changes both)")
        assert len(app.session.history.done) == 2


def footer(app: ModelBrowseApp) -> str:
    return squeeze(screen_text(app).splitlines()[-1])


async def test_a_selection_ends_when_the_cursor_moves_out_of_it() -> None:
    """What a user did: select, freeze the matches, go to `classifier`, press `e`: the replace
    is of classifier alone, not of the selection left armed."""
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("asterisk", *"features.*", "enter", "f")
        await wait_for_text(pilot, "freeze 5 modules matching features.*")
        assert "● features.* (13) · esc clears" in footer(app)  # armed, and it says so
        await pilot.press("colon", *"classifier", "enter")
        screen = await wait_for_text(pilot, "selection features.* ended: the cursor left it")
        assert "●" not in screen
        await pilot.press("e")
        screen = await wait_for_text(pilot, "replace classifier")
        assert "modules matching" not in screen
        await paste(pilot, "nn.Identity()")
        await pilot.press("enter")
        await wait_for_text(pilot, "replace classifier with nn.Identity()")
        assert app.session.history is not None
        model = app.session.history.model
        assert isinstance(model.get_submodule("classifier"), torch.nn.Identity)
        assert isinstance(model.get_submodule("features.0"), torch.nn.Conv2d)
        assert [e.describe() for e in app.session.history.done] == [
            "freeze 5 modules matching features.*",
            "replace classifier with nn.Identity()",
        ]


async def test_a_move_inside_the_selection_keeps_it_and_one_escape_clears_it() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("slash", *"features", "enter")  # a filter too: escape takes the selection
        await pilot.press("asterisk", *"cls:Conv2d", "enter")
        await wait_for_text(pilot, "cls:Conv2d: 5 modules")
        await pilot.press("colon", *"features.3.weight", "enter")  # under a selected module
        await wait_for_text(pilot, "shape (192, 64, 5, 5)")
        assert "● cls:Conv2d (5) · esc clears" in footer(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: "●" not in screen_text(app))
        assert app.session.selection.current is None
        await pilot.press("f")
        await wait_for_text(pilot, "freeze features.3.weight")
        assert app.session.history is not None
        model = app.session.history.model
        assert not model.get_parameter("features.3.weight").requires_grad
        assert model.get_parameter("features.3.bias").requires_grad
        assert model.get_parameter("features.0.weight").requires_grad
