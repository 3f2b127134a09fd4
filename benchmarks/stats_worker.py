"""Statistics of alexnet's largest tensor in the app, and holding `j` over big tensors.

`python -m benchmarks.stats_worker MODE [TIMEOUT]`, printing one JSON line of seconds:

- `app`: `ModelBrowseApp` on `alexnet`, headless at 120x40 (Pilot). Once the tensors are real
  and the edit history started, `:` opens the go-to prompt, `classifier.1.weight` (9216x4096,
  37.7M float32 values) is typed, and `enter` is timed until the frame is drawn (`goto`).
  `App._show_detail` and `estimate_stats` are wrapped with timers. `estimate`: from the start of
  `estimate_stats` until `DetailPane.show_stats` has put the estimate in the pane (what the
  estimate adds to showing the tensor); `show`: from the start of `_show_detail` until then, the
  UI-thread work that shows the tensor's details and estimate (the exact statistics' worker is
  started after that, and the pane is rendered afterwards, in `goto`). `*_first` on this first
  visit, the others the median of it and `VISITS - 1` more (the cursor put on `classifier.1`,
  then back on the tensor). `exact`
  is from the start of the first visit's call until the exact statistics, computed in a worker
  thread, reach the pane (`App._stats_ready`); it is waited for before the other visits.
  Then "holding j": classifier.4 and classifier.6 are expanded too, and `j` goes from the
  `classifier` line to its last line (13 lines: three Linear weights of 37.7M, 16.8M and 4.1M
  values, whose exact statistics start in workers) in rounds, at most one press every
  `REPEAT_S` (a terminal's key repeat), 52 presses or more in all: `hold_max`, `hold_median`.
- `floor`: in a plain script, `estimate_stats` (`estimate_floor`, median of `VISITS` calls) and
  `compute_stats` (`exact_floor`) on a tensor shaped and drawn as alexnet's
  `classifier[1].weight` (uniform in +-1/sqrt(9216), its kaiming-uniform init), after a warm-up
  call on a small tensor.
- `app --no-hold`: `app` without the exact statistics and the holding (for `--quick`); the
  visits follow the first at once.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from textual.pilot import Pilot

from benchmarks.pilot_support import SIZE, settle, timed_press, type_text, wait_for

TARGET = "classifier.1.weight"
LAST_LINE = "classifier.6.bias"
HOLD_PRESSES = 52
REPEAT_S = 0.033
VISITS = 5


async def measure_app(timeout: float, hold: bool = True) -> dict[str, float]:
    from modelbrowse.core import stats as core_stats
    from modelbrowse.tui.app import ModelBrowseApp
    from modelbrowse.tui.options import AppOptions
    from modelbrowse.widgets.module_tree import ModuleTree

    app = ModelBrowseApp(AppOptions(source="alexnet"))
    shown: list[tuple[str, float, float, float]] = []  # path, start, seconds, estimate seconds
    exact_at: dict[int, float] = {}  # detail token -> when exact statistics reached the pane
    show_detail, stats_ready = app._show_detail, app._stats_ready
    estimate_stats = core_stats.estimate_stats

    estimate_started: list[float] = []  # when the estimate of the node shown began
    estimate_shown: list[float] = []  # when estimated statistics last reached the pane

    def timed_estimate_stats(*args: Any, **kwargs: Any) -> Any:
        estimate_started.append(time.perf_counter())
        return estimate_stats(*args, **kwargs)

    def timed_show_detail(path: str) -> None:
        start = time.perf_counter()
        del estimate_shown[:], estimate_started[:]
        show_detail(path)
        # Until the estimate is in the pane; the exact statistics' worker starts after that.
        end = estimate_shown[0] if estimate_shown else time.perf_counter()
        estimate = end - estimate_started[0] if estimate_started else 0.0
        shown.append((path, start, end - start, estimate))

    def timed_stats_ready(token: int, stats: Any) -> None:
        stats_ready(token, stats)
        if token == app._detail_token and not stats.estimated:
            exact_at[token] = time.perf_counter()

    def timed_show_stats(pane: Any, stats: Any, note: str = "") -> None:
        show_stats(pane, stats, note)
        if stats is not None and stats.estimated:
            estimate_shown.append(time.perf_counter())

    from modelbrowse.widgets.detail_pane import DetailPane

    show_stats = DetailPane.show_stats
    DetailPane.show_stats = timed_show_stats  # type: ignore[method-assign]
    core_stats.estimate_stats = timed_estimate_stats  # the app imports it when it shows a node
    app._show_detail = timed_show_detail  # type: ignore[method-assign]
    app._stats_ready = timed_stats_ready  # type: ignore[method-assign]
    out: dict[str, float] = {}
    async with app.run_test(size=SIZE) as pilot:

        def ready() -> bool:
            index = app.session.index
            return index is not None and not index.is_meta and app.session.history is not None

        await wait_for(pilot, ready, timeout, "alexnet with real tensors")
        await settle(pilot)
        tree = app.query_one(ModuleTree)
        await pilot.press("colon")
        await type_text(pilot, TARGET)
        await settle(pilot)
        del shown[:]
        out["goto"] = await timed_press(pilot, "enter")
        calls = [(seconds, estimate) for path, _, seconds, estimate in shown if path == TARGET]
        if tree.cursor_path != TARGET or not calls:
            raise RuntimeError(f"go to {TARGET} left the cursor on {tree.cursor_path!r}")
        out["show_first"], out["estimate_first"] = calls[0]
        if hold:
            out["exact"] = await until_exact(pilot, shown, exact_at, timeout)
        from modelbrowse.tui.app import HELD_KEY_GAP_S

        for _ in range(VISITS - 1):
            tree.select_path("classifier.1")
            await settle(pilot)
            # A visit, not a held key: highlights closer together than this wait for a rest.
            await asyncio.sleep(HELD_KEY_GAP_S * 2)
            tree.select_path(TARGET)
            await settle(pilot)
            await wait_for(
                pilot, lambda: shown[-1][0] == TARGET, timeout, f"the detail of {TARGET} again"
            )
            calls.append(shown[-1][2:])
        out["show"] = statistics.median(seconds for seconds, _ in calls)
        out["estimate"] = statistics.median(estimate for _, estimate in calls)
        if hold:
            out.update(await hold_j(pilot, tree))
        app.exit()
    return out


async def until_exact(
    pilot: Pilot[Any],
    shown: list[tuple[str, float, float, float]],
    exact_at: dict[int, float],
    timeout: float,
) -> float:
    """Seconds from showing the tensor until its exact statistics reach the pane."""
    start = next(start for path, start, _, _ in shown if path == TARGET)
    token = pilot.app._detail_token
    await wait_for(pilot, lambda: token in exact_at, timeout, "exact statistics")
    return exact_at[token] - start


async def hold_j(pilot: Pilot[Any], tree: Any) -> dict[str, float]:
    """`j` held over classifier's lines, in rounds from the `classifier` line."""
    out: dict[str, float] = {}
    for path in ("classifier.4", "classifier.6"):
        node = tree.tree_node_for(path)
        assert node is not None
        node.expand()
    times: list[float] = []
    while len(times) < HOLD_PRESSES:
        tree.select_path("classifier")
        await settle(pilot)
        while tree.cursor_path != LAST_LINE:
            began = time.perf_counter()
            times.append(await timed_press(pilot, "j"))
            await asyncio.sleep(max(0.0, REPEAT_S - (time.perf_counter() - began)))
    out.update(hold_max=max(times), hold_median=statistics.median(times))
    out["hold_presses"] = len(times)
    return out


def measure_floor(timeout: float) -> dict[str, float]:
    import math

    import torch

    from modelbrowse.core.stats import compute_stats, estimate_stats

    # classifier[1].weight as alexnet() makes it: kaiming-uniform, bound 1/sqrt(fan_in).
    tensor = torch.empty(4096, 9216).uniform_(-1 / math.sqrt(9216), 1 / math.sqrt(9216))
    warm = torch.randn(100_000)
    estimate_stats(warm), compute_stats(warm)
    estimates = []
    for _ in range(VISITS):
        start = time.perf_counter()
        estimate_stats(tensor)
        estimates.append(time.perf_counter() - start)
    start = time.perf_counter()
    compute_stats(tensor)
    end = time.perf_counter()
    return {"estimate_floor": statistics.median(estimates), "exact_floor": end - start}


def main(mode: str, timeout: float, hold: bool) -> None:
    if mode == "app":
        print(json.dumps(asyncio.run(measure_app(timeout, hold))))
    elif mode == "floor":
        print(json.dumps(measure_floor(timeout)))
    else:
        raise SystemExit(f"unknown mode {mode!r}: app, floor")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--no-hold"]
    if len(args) not in (1, 2):
        raise SystemExit(__doc__)
    main(args[0], float(args[1]) if len(args) == 2 else 120.0, "--no-hold" not in sys.argv)
