"""Whole-screen snapshots (pytest-textual-snapshot); regenerate with --snapshot-update."""

from __future__ import annotations

from textual.pilot import Pilot

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions
from tests.app_support import wait_for, wait_for_text, wait_loaded


def test_main_screen_on_alexnet(snap_compare: object) -> None:
    async def open_classifier(pilot: Pilot[None]) -> None:
        await wait_loaded(pilot)
        app = pilot.app
        assert isinstance(app, ModelBrowseApp)
        await wait_for(
            pilot, lambda: app.session.shape is not None
        )  # the shape check runs in a worker
        await pilot.press("colon", *"classifier.6", "enter")
        await wait_for_text(pilot, "out_features=1000")

    app = ModelBrowseApp(AppOptions("alexnet"))
    assert snap_compare(app, terminal_size=(100, 30), run_before=open_classifier)  # type: ignore[operator]
