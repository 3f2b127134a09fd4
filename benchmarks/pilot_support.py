"""Driving a Textual app headless in a benchmark worker, and timing one key until it is done.

`Pilot.press` waits for the CPU to go idle (at least two sleeps of 20 ms per key), so timing it
measures Textual's test pacing, not the app. `timed_press` posts the key event to the app, as the
terminal driver's thread has the event loop do, and times until the app has nothing left to do
for it: every message queue of the app and the screen's widgets drained (the key, the action, the
messages they posted, and theirs), animations finished, and the screen laid out and rendered (the
compositor's update, which the headless driver then writes nowhere).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from textual import events
from textual.app import App
from textual.pilot import Pilot

SIZE = (120, 40)


def screen_text(app: App[Any]) -> str:
    """The characters on the screen, line by line."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


async def wait_for(
    pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float, what: str
) -> float:
    """Let the app run until `predicate()` holds; seconds waited. Raises after `timeout`."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise RuntimeError(
                f"timed out after {timeout:g} s waiting for {what}; screen:\n"
                f"{screen_text(pilot.app)}"
            )
        await asyncio.sleep(0.02)
    return time.perf_counter() - start


def _busy(app: App[Any]) -> list[Any]:
    """The app and the screen's widgets that have messages waiting."""
    pumps = [app, *app.screen.walk_children(with_self=True)]
    return [pump for pump in pumps if not pump._message_queue.empty()]


async def _drain(pumps: list[Any]) -> None:
    """Until each pump has handled what it had queued (a callback queued behind it has run)."""
    marks = []
    for pump in pumps:
        mark = asyncio.Event()
        if pump.call_later(mark.set):
            marks.append(mark)
    await asyncio.gather(*(mark.wait() for mark in marks))


async def settle(pilot: Pilot[Any]) -> None:
    """Until the app and the screen's widgets have handled every message, and a frame is made.

    Only the widgets with messages waiting are waited on (waiting on all of them, as
    `Pilot._wait_for_screen` does, costs a few milliseconds with the app's 22 widgets).
    """
    app = pilot.app
    for _ in range(1000):
        await asyncio.sleep(0)
        busy = _busy(app)
        if busy:
            await _drain(busy)
            continue
        await app._animator.wait_until_complete()
        app.screen._on_timer_update()  # lay out and render what changed, as the update timer does
        await asyncio.sleep(0)
        if not _busy(app):
            return
    raise RuntimeError("the app kept posting messages: it never settled")


def key_event(key: str) -> events.Key:
    """The event a terminal sends for `key` (`j`, `enter`, `colon`)."""
    character = key if len(key) == 1 else {"enter": "\r", "colon": ":", "full_stop": "."}.get(key)
    return events.Key(key, character)


async def timed_press(pilot: Pilot[Any], key: str) -> float:
    """Seconds from posting `key` until the app has finished with it (see the module doc)."""
    app = pilot.app
    event = key_event(key)
    event.set_sender(app)
    start = time.perf_counter()
    app.post_message(event)  # what the driver's reader thread has the event loop do
    await settle(pilot)
    return time.perf_counter() - start


async def type_text(pilot: Pilot[Any], text: str) -> None:
    """Type characters (untimed; `Pilot.press` names the punctuation keys)."""
    await pilot.press(*text)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0.95: the 95th percentile), interpolated."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(fraction * 100) - 1]


def collect_first() -> float:
    """A full collection before timing, so that garbage from loading is not charged to a key;
    returns the seconds it took (the pause a full collection costs at this heap size)."""
    start = time.perf_counter()
    gc.collect()
    return time.perf_counter() - start
