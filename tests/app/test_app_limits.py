"""A hostile spec in the app: refused in the dialog, checked off the UI thread, escape cancels."""

from __future__ import annotations

from tests.app.test_app_edits import SIZE, goto, replace_with
from tests.app_support import open_app, screen_text, squeeze, wait_for, wait_for_text

SLOW = (
    "nn.ModuleList(["
    + ", ".join(["nn.TransformerEncoder(nn.TransformerEncoderLayer(1, 1, 1), 3000)"] * 3)
    + "])"
)


async def test_a_spec_too_large_is_refused_in_the_dialog() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await goto(pilot, "classifier.6")
        await replace_with(
            pilot, "nn.TransformerEncoder(nn.TransformerEncoderLayer(1, 1, 1), 10**5)"
        )
        screen = await wait_for_text(pilot, "would create 100,000 layers; at")
        assert "replace classifier.6" in screen  # the dialog stays open, the model as it was
        await pilot.press("escape")
        await pilot.pause()
        assert app.session.history is not None and not app.session.history.done


async def test_escape_leaves_a_spec_being_checked_and_the_build_stops() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await goto(pilot, "classifier.6")
        await replace_with(pilot, SLOW)
        await wait_for_text(pilot, "checking the spec… · escape cancels")
        await pilot.press("escape")
        await wait_for(pilot, lambda: "replace classifier.6" not in squeeze(screen_text(app)))
        await goto(pilot, "features.0")  # the app answers keys while the build winds down
        await wait_for(pilot, lambda: not any(w.is_running for w in app.workers), 120)
        assert app.session.history is not None and not app.session.history.done
        assert "unsaved" not in squeeze(screen_text(app))
