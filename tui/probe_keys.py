"""The probe key: `p` runs the model once in a worker (escape cancels), the tree and the detail
pane show what it found, `!` goes to the first NaN/Inf and to each parameter with no gradient.

The probe's state and result are the session's (`core/session/probing.py`); the run itself
is `core.probe`'s, imported in the worker."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual import work
from textual.message import Message

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.session.probing import Probe, ProbeInput, ProbeSettings
from modelbrowse.core.units import printable
from modelbrowse.tui.base import AppBase
from modelbrowse.tui.screens.probe_dialog import ProbeDialog
from modelbrowse.widgets.detail_pane import DetailPane
from modelbrowse.widgets.module_tree import ModuleTree
from modelbrowse.widgets.probe_view import (
    bad_text,
    input_stats_text,
    probe_renderable,
    tree_suffix,
)

if TYPE_CHECKING:
    import threading

    from rich.text import Text

    from modelbrowse.core.nodes import Node
    from modelbrowse.core.probe import ProbeResult

# Progress reaches the status line at most this often: a model of 10,000 modules would
# otherwise post a message per module.
PROGRESS_EVERY_S = 0.05
# The status line names this many parameters with no gradient; `!` goes to each, `L` has all.
NAMED_NO_GRAD = 3


class ProbeNews(Message):
    """From the probe's thread: run `callback(*args)` on the app."""

    def __init__(self, callback: Callable[..., None], *args: Any) -> None:
        super().__init__()
        self.callback = callback
        self.args = args


class ProbeActions(AppBase):
    """`p` probes the model, `!` goes to what the probe found wrong."""

    def action_probe(self) -> None:
        session = self.session
        if session.probe.running:
            self.notify("a probe is running: escape cancels it", severity="warning")
            return
        refusal = Probe.refusal(session)
        if refusal is not None:
            self.notify(refusal, severity="warning", title="no probe")
            return
        if session.history is None:  # values not made yet (a big model opened lazily)
            self._when_real(self.action_probe, "initialising weights: the probe dialog follows")
            return
        try:
            given = Probe.input_for(session)
        except ModelBrowseError as exc:
            self.notify(str(exc), severity="warning", title="no probe")
            return

        def chosen(settings: ProbeSettings | None) -> None:
            if settings is not None:
                self._start_probe(given, settings)

        loss = f"cross-entropy against {given.target}" if given.target else ""
        self.push_screen(ProbeDialog(given.text, session.probe.settings, loss), chosen)

    def _start_probe(self, given: ProbeInput, settings: ProbeSettings) -> None:
        if self.session.probe.running or Probe.refusal(self.session) is not None:
            return
        cancel = self.session.probe.begin(settings)
        self.refresh_bindings()
        self._status("probing… escape cancels")
        self._probe_worker(given, settings, cancel)

    def on_probe_news(self, news: ProbeNews) -> None:
        news.callback(*news.args)

    @work(thread=True, exclusive=True, group="probe")
    def _probe_worker(
        self, given: ProbeInput, settings: ProbeSettings, cancel: threading.Event
    ) -> None:
        last = [0.0]

        def tell(callback: Callable[..., None], *args: object) -> None:
            with contextlib.suppress(RuntimeError):  # the app has left
                self.post_message(ProbeNews(callback, *args))

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_S or done == total:
                last[0] = now
                tell(self._probe_progress, done, total)

        try:
            result = Probe.run(self.session, given, settings, progress, cancel)
        except Exception as exc:  # never a traceback; a cancelled run is not a failure
            if cancel.is_set():
                tell(self._probe_cancelled)
            elif isinstance(exc, ModelBrowseError):
                tell(self._probe_failed, str(exc))
            else:
                tell(self._probe_failed, f"unexpected error: {exc!r}")
            return
        tell(self._probe_done, result)

    def _probe_progress(self, done: int, total: int) -> None:
        if self.session.probe.running:
            self._status(f"probing… {done}/{total} modules · escape cancels")

    def cancel_probe(self) -> bool:
        """Escape: stop the probe under way; False when none runs."""
        if not self.session.probe.cancel():
            return False
        self._status("cancelling the probe…")
        return True

    def _probe_cancelled(self) -> None:
        self.session.probe.cancelled()
        self.refresh_bindings()
        self._status("probe cancelled")

    def _probe_failed(self, message: str) -> None:
        self.session.probe.failed(message)
        self.refresh_bindings()
        self._show_probe()
        self._status(f"probe failed: {message}", "bold red")
        self.notify(message, severity="error", title="probe failed")

    def _probe_done(self, result: ProbeResult) -> None:
        self.session.probe.finished(result)
        self.refresh_bindings()
        self._show_probe()
        self._status(*probe_summary(result))

    def _show_probe(self) -> None:
        """The tree's lines and the cursor's pane again, with (or without) the result."""
        tree = self.query_one(ModuleTree)
        tree.suffix = self._probe_suffix
        self.screen_stack[0].set_class(self.session.probe.shown is not None, "probed")
        if tree.index is not None:
            tree.refresh_labels()
        self._show_detail(tree.cursor_path or "")

    def _probe_suffix(self, node: Node) -> Text | None:
        probe = self.session.probe
        result = probe.shown
        if result is None:
            return None
        if node.is_module:
            return tree_suffix(result.outputs.get(node.path), probe.stale)
        return tree_suffix(None, probe.stale, no_grad=node.path in result.no_grad)

    def _show_probe_detail(self, path: str, is_module: bool) -> None:
        """The probe's block in the detail pane for `path`, when a result is shown."""
        probe = self.session.probe
        result = probe.shown
        block = None if result is None else probe_renderable(result, path, is_module, probe.stale)
        self.query_one(DetailPane).show_probe(block)

    # --- ! -------------------------------------------------------------------------------------

    def action_first_bad(self) -> None:
        """The first module with NaN/Inf, then (pressed again) the next one, then each
        trainable parameter that got no gradient."""
        probe = self.session.probe
        result = probe.shown
        if result is None:
            self.notify("no probe yet: p runs one", severity="warning")
            return
        bad = probe.bad_modules()
        stops = bad + list(result.no_grad)
        if not stops:
            self._status("probe: no NaN/Inf, and every trainable parameter got a gradient")
            return
        tree = self.query_one(ModuleTree)
        here = tree.cursor_path
        number = (stops.index(here) + 1) % len(stops) if here in stops else 0
        target = stops[number]
        if not tree.select_path(target):
            self._apply_filter("")  # hidden by a filter
            tree.select_path(target)
        count = f"{number + 1}/{len(stops)}"
        if number < len(bad):
            stats = result.outputs[target]
            where = "first" if number == 0 else "then"
            message = f"{count} {bad_text(stats)} {where} from {printable(target) or '(root)'}"
            if target == result.first_bad:
                message += f" · {input_stats_text(result.first_bad_inputs)}"
        else:
            owner = target.rpartition(".")[0]
            message = f"{count} no gradient: {printable(target)} (in {printable(owner) or 'root'})"
        self._status(message, "bold red" if number < len(bad) else "bold yellow")


def probe_summary(result: ProbeResult) -> tuple[str, str]:
    """The status line after a run, and its style."""
    mode = "train mode" if result.train else "eval mode"
    parts = [f"probe: {len(result.outputs)} modules in {result.seconds:.2f} s ({mode})"]
    style = "green"
    if result.first_bad is not None:
        stats = result.outputs.get(result.first_bad)
        what = bad_text(stats) if stats is not None else "NaN/Inf"
        parts.append(f"{what} first from {printable(result.first_bad) or '(root)'} (! goes there)")
        style = "bold red"
    else:
        parts.append("no NaN/Inf")
    if result.backward:
        if result.loss is not None:
            parts.append(f"loss {result.loss:.6g}")
        if result.no_grad:
            names = ", ".join(printable(p) for p in result.no_grad[:NAMED_NO_GRAD])
            more = len(result.no_grad) - NAMED_NO_GRAD
            names += f", and {more} more" if more > 0 else ""
            noun = "parameter" if len(result.no_grad) == 1 else "parameters"
            parts.append(f"{len(result.no_grad)} trainable {noun} got no gradient: {names} (!)")
            style = style if result.first_bad else "bold yellow"
        else:
            parts.append("every trainable parameter got a gradient")
    return " · ".join(parts), style
