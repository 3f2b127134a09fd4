"""What the parts of the App share: the options, the session, and the calls they make on one
another. Each part (`tui/editing.py`, `tui/loading.py`, ...) is a subclass of `AppBase` holding
key actions and workers; the state they act on is the session's (`core/session/`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import App

from modelbrowse.widgets.model_header import ModelHeader
from modelbrowse.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from textual.worker import Worker

    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.session import Session
    from modelbrowse.tui.options import AppOptions

Then = Callable[[bool], None]
"""Told, once an edit that had to be built first is applied or not, whether it was."""

LOADING = "the model is still loading"


class AppBase(App[None]):
    """The App's shared helpers; `ModelBrowseApp` combines the parts."""

    options: AppOptions
    session: Session
    error_message: str | None  # the line printed when the app stops; set by `_leave` only

    def _leave(self, message: str, return_code: int) -> None:
        """Stop the app; the command line prints `message` and exits with `return_code`."""
        self.error_message = message
        self.exit(return_code=return_code)

    def _status(self, message: str, style: str = "") -> None:
        """Say `message` on the status line, and keep it for the edit log."""
        self.query_one(StatusLine).say(message, style)

    def _status_transient(self, message: str) -> None:
        """A message of a run typed key by key (a filter's or a selection's count): the log
        keeps only the last of the run."""
        self.query_one(StatusLine).update(Text(message))

    def _refresh_header(self) -> None:
        session = self.session
        if session.index is None:
            return
        self.query_one(ModelHeader).show_index(
            session.index,
            session.state_label,
            session.unsaved,
            session.shape_text,
            session.shape_failed,
            session.warning,
        )

    def _when_real(
        self,
        action: Callable[[], object],
        waiting: str = "initialising weights: the edit is applied when they are ready",
    ) -> None:
        """Run an action now if tensors are real, else once they are (and say so)."""
        if self.session.history is not None:
            action()
            return
        self.session.defer(action)
        self._ensure_materialising()
        self.notify(waiting)

    def _ensure_materialising(self) -> None:
        if self.session.begin_materialising():
            self._refresh_header()
            self.materialise()

    if TYPE_CHECKING:  # defined by the parts; named here so that each part can call them

        def materialise(self) -> Worker[None]: ...

        def run_shape_check(self) -> Worker[None]: ...

        def _show_detail(self, path: str) -> None: ...

        def _apply_filter(self, query: str) -> None: ...

        def _apply(
            self,
            edit: Edit,
            confirmed: bool = False,
            then: Then | None = None,
            quiet: bool = False,
        ) -> bool | None: ...

        def _build_first(self, edit: Edit, note: str, then: Then | None) -> bool: ...

        def clear_module_selection(self) -> bool: ...

        def _cursor_moved(self, path: str | None) -> None: ...

        def cancel_build(self) -> bool: ...

        def cancel_probe(self) -> bool: ...

        def _show_probe_detail(self, path: str, is_module: bool) -> None: ...

        def _queue_recipe_edits(self) -> None: ...

        def _announce_kept_edits(self) -> None: ...

        def keep_unsaved_edits(self, signum: int) -> str: ...

        def action_quit_app(self) -> None: ...
