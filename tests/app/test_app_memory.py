"""An app that stopped lets its model go: nothing process-wide keeps it alive."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from torch import nn

from modelbrowse.tui.app import ModelBrowseApp
from tests.app_support import open_app, wait_for_text


async def _run_and_stop(source: str) -> tuple[weakref.ref[nn.Module], weakref.ref[ModelBrowseApp]]:
    """Open `source`, go to a weight (its lines are drawn), quit; weak references to the model and
    the app. Frozen while it runs: the collector is settled around the loaded model."""
    async with open_app(source, size=(120, 40)) as (app, pilot):
        assert app.session.index is not None
        assert gc.get_freeze_count() > 0  # what must be undone below
        await pilot.press("colon", *"embed.weight", "enter")
        await wait_for_text(pilot, "◆ weight (10, 8)")
        model = weakref.ref(app.session.index.model)
        shown = weakref.ref(app)
    return model, shown


def test_a_stopped_app_leaves_no_model_behind(models_file: Path) -> None:
    threshold = gc.get_threshold()
    # A loop of its own, closed before the check, as each test's loop is: its executor's
    # threads were started under the app's capture of sys.stderr, and hold it while they run.
    model, app = asyncio.run(_run_and_stop(f"{models_file}:SharedNet"))
    gc.collect()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold
    assert app() is None, "the app outlived its run"
    assert model() is None, "the model outlived the app"
