"""An unexpected error anywhere in the app: a one-line notification, a log, and the app goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.widgets.model_header import ModelHeader
from tests.app_support import (
    open_app,
    screen_text,
    squeeze,
    wait_for,
    wait_for_notification,
    wait_for_text,
)

SIZE = (130, 40)
pytestmark = pytest.mark.app_errors_expected


def log_file(state: Path) -> Path:
    return state / "modelbrowse" / "log" / "modelbrowse.log"


async def test_an_error_in_a_key_handler_is_a_notification_and_the_app_goes_on(
    monkeypatch: pytest.MonkeyPatch, _state_folder: Path
) -> None:
    def broken(self: ModelBrowseApp) -> None:
        raise RuntimeError("summary [/] broke [@click=app.quit]here")

    monkeypatch.setattr(ModelBrowseApp, "action_summary", broken)
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("s")
        shown = await wait_for_notification(pilot, "unexpected error")
        assert "RuntimeError: summary [/] broke [@click=app.quit]here" in shown
        assert f"traceback in {log_file(_state_folder)}" in shown
        assert app.is_running
        await pilot.press("j")
        await wait_for(pilot, lambda: "│ features │" in squeeze(screen_text(app)))
    log = log_file(_state_folder).read_text()
    assert "Traceback (most recent call last)" in log
    assert "in broken" in log
    assert "RuntimeError: summary [/] broke" in log


async def test_an_error_in_a_worker_is_a_notification_and_the_app_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import modelbrowse.core.stats as stats

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("statistics failed")

    monkeypatch.setattr(stats, "compute_stats", broken)
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("colon", *"classifier.1.weight", "enter")
        shown = await wait_for_notification(pilot, "ValueError: statistics failed")
        assert "unexpected error" in shown
        assert "estimate from a sample" in squeeze(screen_text(app))  # what was shown stays
        assert app.is_running


async def test_an_error_on_every_frame_stops_the_app_with_one_line_and_status_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: ModelHeader) -> str:
        raise RuntimeError("cannot draw the header")

    async with open_app("alexnet", size=SIZE) as (app, pilot):
        monkeypatch.setattr(ModelHeader, "render", broken)

        def stopped() -> bool:
            if app.is_running:
                app.query_one(ModelHeader).refresh()  # another frame, another error
            return not app.is_running

        await wait_for(pilot, stopped, timeout=30)
    assert app.return_code == 1
    assert app.error_message is not None
    assert app.error_message.startswith("unexpected error: RuntimeError: cannot draw the header")


async def test_ctrl_c_asks_before_losing_edits_and_a_second_one_quits() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("f")
        await wait_for_text(pilot, "1 unsaved edit")
        await pilot.press("ctrl+q")
        await wait_for_text(pilot, "1 unsaved edit will be lost. Quit anyway?")
        await pilot.press("escape")
        await pilot.press("ctrl+c")
        await wait_for_notification(pilot, "ctrl+c again to quit at once")
        await wait_for_text(pilot, "1 unsaved edit will be lost. Quit anyway?")
        assert app.is_running
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.return_code == 130


async def test_ctrl_c_without_edits_quits_with_status_0() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("ctrl+c")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.return_code in (0, None)


@pytest.mark.parametrize("size", [(60, 15), (60, 30), (45, 12)])
async def test_small_terminals_still_browse(size: tuple[int, int]) -> None:
    async with open_app("alexnet", size=size) as (app, pilot):
        await pilot.press("j", "l", "j")
        await wait_for(pilot, lambda: "features.0" in screen_text(app))
        screen = screen_text(app)
        assert "Conv2d" in screen
        assert "too small" not in screen


async def test_stacked_panes_in_a_tall_narrow_terminal() -> None:
    async with open_app("alexnet", size=(60, 30)) as (app, _pilot):
        lines = screen_text(app).splitlines()
        tree_line = next(i for i, line in enumerate(lines) if "▼ AlexNet" in line)
        detail_line = next(i for i, line in enumerate(lines) if "subtree totals" in line)
        assert detail_line > tree_line + 3  # the details are below the tree, not beside it


async def test_a_terminal_too_small_says_so_until_it_grows() -> None:
    async with open_app("alexnet", size=(30, 8)) as (app, pilot):
        screen = squeeze(screen_text(app).replace("\n", " "))
        assert "terminal too small (30x8): modelbrowse needs 40x10" in screen
        await pilot.resize_terminal(120, 40)
        await wait_for(pilot, lambda: "▼ AlexNet" in screen_text(app))
        assert "too small" not in screen_text(app)
