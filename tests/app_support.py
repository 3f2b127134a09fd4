"""Helpers for driving the app with Pilot and reading what the screen shows."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from textual import events
from textual.app import App
from textual.pilot import Pilot

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions


def screen_text(app: App[None]) -> str:
    """The characters on the screen, line by line, as a person would read them."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def squeeze(text: str) -> str:
    """Runs of spaces folded to one, so assertions do not depend on column alignment."""
    return re.sub(r"[ \t]+", " ", text)


async def wait_for(
    pilot: Pilot[None], predicate: Callable[[], bool], timeout: float = 60.0
) -> None:
    """Let the app run until `predicate()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; screen:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)
        await asyncio.sleep(0)


async def settle(pilot: Pilot[None], timeout: float = 30.0) -> None:
    """Wait until the app has handled every key and message sent so far and finished the work
    they started (no worker left running): then a test may assert that something did not
    happen, as nothing is still on its way."""
    await pilot.pause()
    await wait_for(pilot, lambda: all(w.is_finished for w in pilot.app.workers), timeout)
    await pilot.pause()


async def wait_loaded(pilot: Pilot[None], timeout: float = 60.0) -> None:
    """Wait until the model is shown with real tensors."""
    app = pilot.app
    assert isinstance(app, ModelBrowseApp)
    await wait_for(
        pilot,
        lambda: (
            app.session.index is not None
            and not app.session.previewing
            and not app.session.index.is_meta
            and not app.session.materialising
        ),
        timeout,
    )
    await pilot.pause()


@asynccontextmanager
async def open_app(
    options: AppOptions | str, *, size: tuple[int, int], loaded: bool = True
) -> AsyncIterator[tuple[ModelBrowseApp, Pilot[None]]]:
    """The app on `options` (the command line, or a source alone) in a terminal of `size`, and
    its pilot; once the model is shown with real tensors unless `loaded` is False."""
    app = ModelBrowseApp(options if isinstance(options, AppOptions) else AppOptions(options))
    async with app.run_test(size=size) as pilot:
        if loaded:
            await wait_loaded(pilot)
        yield app, pilot


async def wait_for_text(pilot: Pilot[None], needle: str, timeout: float = 30.0) -> str:
    """Wait until `needle` is on the screen (spaces folded); returns the screen."""
    await wait_for(pilot, lambda: needle in squeeze(screen_text(pilot.app)), timeout)
    return squeeze(screen_text(pilot.app))


async def paste(pilot: Pilot[None], text: str) -> None:
    """`text` into the focused input as a terminal pastes it: one event (Pilot takes 50-100 ms
    a key, so a long spec typed key by key took most of a test's time)."""
    pilot.app.post_message(events.Paste(text))
    await pilot.pause()


def notifications(app: App[None]) -> str:
    """The titles and messages of the notifications the app is showing, one per line."""
    return "\n".join(f"{n.title}: {n.message}" for n in app._notifications)


async def wait_for_notification(pilot: Pilot[None], needle: str, timeout: float = 30.0) -> str:
    await wait_for(pilot, lambda: needle in notifications(pilot.app), timeout)
    return notifications(pilot.app)


def widget_text(app: App[None], selector: str) -> str:
    """What the widget `selector` (on the current screen) shows inside its border and padding,
    line by line."""
    region = app.screen.query_one(selector).content_region
    lines = screen_text(app).splitlines()[region.y : region.bottom]
    return "\n".join(line[region.x : region.right] for line in lines)


def unwrapped(text: str) -> str:
    """`text` without its spaces and line breaks: compares a message wherever it wrapped."""
    return "".join(text.split())
