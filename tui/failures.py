"""The app's edge: unexpected errors become notifications, ctrl+c quits cleanly."""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

from modelbrowse.core.error_log import one_line, record_error, where_logged
from modelbrowse.core.units import printable_lines
from modelbrowse.tui.base import AppBase
from modelbrowse.tui.signals import SIGNAL_STATUS_BASE

if TYPE_CHECKING:
    from collections.abc import Callable

# This many unexpected errors within `STORM_WINDOW_S` (a widget failing on every frame, say):
# the app stops, as it cannot be used, and says so in one line.
STORM_ERRORS = 5
STORM_WINDOW_S = 2.0
# A second ctrl+c within this many seconds quits, whatever is unsaved.
SECOND_CTRL_C_S = 3.0


class FailureHandling(AppBase):
    """Keeps the app running after an error in a key handler, worker or render."""

    _error_times: tuple[float, ...] = ()  # replaced, never changed in place
    _ctrl_c_at = 0.0

    def _handle_exception(self, error: Exception) -> None:
        """Log the traceback and carry on; Textual's default is to exit with it on screen."""
        from textual.worker import WorkerFailed

        if isinstance(error, WorkerFailed) and isinstance(error.error, Exception):
            error = error.error  # what the worker raised, not Textual's wrapper
        log = record_error(error, context=f"source {self.options.source!r}")
        now = time.monotonic()
        recent = [t for t in self._error_times if now - t < STORM_WINDOW_S]
        self._error_times = (*recent, now)
        if not self.is_running or len(self._error_times) >= STORM_ERRORS:
            self._leave(f"unexpected error: {one_line(error)} ({where_logged(log)})", 1)
            return
        detail = where_logged(log)
        if self.options.debug:
            import traceback

            detail = "".join(traceback.format_exception(error)[-6:]) + detail
        self.notify(
            f"{one_line(error)}\nnothing else changed; {detail}",
            title="unexpected error",
            severity="error",
            timeout=15,
            markup=False,
        )

    def call_from_thread(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `callback` on the UI thread for a worker, unless the app has stopped meanwhile:
        a worker that finishes while the app quits (the shape check, materialising) would find
        the screen's widgets gone, and that is no error to report on the way out. The check is
        made on the UI thread, where the app stops."""

        def unless_stopped() -> Any:
            return callback(*args, **kwargs) if self.is_running else None

        return super().call_from_thread(unless_stopped)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: Any = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Notifications are plain text: messages quote keys and paths from files, in which
        `[/]` would crash the markup parser and escape sequences would reach the terminal."""
        super().notify(
            printable_lines(message),
            title=printable_lines(title),
            severity=severity,
            timeout=timeout,
            markup=markup,
        )

    # --- quitting ------------------------------------------------------------------------

    def action_ctrl_c(self) -> None:
        """ctrl+c asks like `q`; a second one soon after quits at once."""
        now = time.monotonic()
        if now - self._ctrl_c_at < SECOND_CTRL_C_S:
            self.exit(return_code=SIGNAL_STATUS_BASE + signal.SIGINT)
            return
        self._ctrl_c_at = now
        self.action_quit_app()
        self.notify("ctrl+c again to quit at once", timeout=SECOND_CTRL_C_S, markup=False)
