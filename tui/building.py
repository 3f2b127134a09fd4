"""An edit's new modules built before it is applied: in a worker thread, with progress on the
status line, escape cancelling; only the finished modules reach the UI thread, where the edit
attaches them (fast) through the history, so undo and redo put back the same objects."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual import work

from modelbrowse.core.error_log import one_line
from modelbrowse.core.errors import ModelBrowseError

if TYPE_CHECKING:
    from torch import nn

    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.edits.history import EditHistory
    from modelbrowse.core.edits.modules import NewModule
    from modelbrowse.tui.app import ModelBrowseApp

Then = Callable[[bool], None]
"""Told, once an edit that had to be built first is applied or not, whether it was."""

_LABEL_CHARS = 48


@dataclass(eq=False)
class _Build:
    """One build in progress: what the status line calls it, and its cancel flag."""

    label: str
    cancelled: threading.Event = field(default_factory=threading.Event)


def _label(builds: list[NewModule]) -> str:
    from modelbrowse.core.edits.specs import spec_code

    text = spec_code(builds[0].edit.spec)
    if len(text) > _LABEL_CHARS:
        text = text[: _LABEL_CHARS - 1] + "…"
    return f"{len(builds)} × {text}" if len(builds) > 1 else text


class BuildActions:
    """Mixed into the App: build what an edit needs off the UI thread, then apply it."""

    history: EditHistory | None
    _build: _Build | None = None

    @property
    def _builder_app(self) -> ModelBrowseApp:
        return self  # type: ignore[return-value]

    def build_refusal(self) -> str | None:
        """Why no other edit may start now (one is being built), or None."""
        if self._build is None:
            return None
        return f"{self._build.label} is being built: wait, or escape cancels it"

    def cancel_build(self) -> bool:
        """Escape: drop the build in progress (its result is discarded); False when none."""
        build, self._build = self._build, None
        if build is None:
            return False
        build.cancelled.set()  # the worker stops at its next module or tensor
        self._builder_app._status("nothing changed: the build was cancelled")
        return True

    def _build_first(self, edit: Edit, then: Then | None) -> bool:
        """Start building the modules `edit` still needs; False when it needs none. Once
        built, the edit is applied (and `then` told) on the UI thread."""
        from modelbrowse.core.edits.modules import to_build

        assert self.history is not None
        builds = to_build(edit, self.history.model)
        if not builds:
            return False
        build = _Build(_label(builds))
        self._build = build
        self._builder_app._status(f"building {build.label}… · escape cancels", "bold")
        self._build_modules(edit, builds, build, then)
        return True

    @work(thread=True, group="build", exit_on_error=False)
    def _build_modules(
        self, edit: Edit, builds: list[NewModule], build: _Build, then: Then | None
    ) -> None:
        from modelbrowse.core.sources.build_budget import (
            BuildCancelled,
            cancellable,
            check_cancelled,
        )

        app = self._builder_app

        def stopped() -> bool:  # escape, or the app quitting: nobody waits for the module
            return build.cancelled.is_set() or not app.is_running

        modules: list[nn.Module] = []
        problem = ""
        try:
            with cancellable(stopped):
                for number, new in enumerate(builds, start=1):
                    check_cancelled(build.label)
                    if len(builds) > 1:
                        app.call_from_thread(self._progress, build, number, len(builds))
                    modules.append(new.build())
        except BuildCancelled:
            return
        except ModelBrowseError as exc:
            problem = str(exc)
        except Exception as exc:  # out of memory, a constructor's own error: nothing applied
            problem = f"building {build.label} failed: {one_line(exc)}"
        if not stopped():
            app.call_from_thread(self._built, edit, builds, modules, build, problem, then)

    def _progress(self, build: _Build, number: int, count: int) -> None:
        if self._build is build:
            message = f"building {build.label} ({number} of {count})… · escape cancels"
            self._builder_app._status(message, "bold")

    def _built(
        self,
        edit: Edit,
        builds: list[NewModule],
        modules: list[nn.Module],
        build: _Build,
        problem: str,
        then: Then | None,
    ) -> None:
        app = self._builder_app
        if self._build is not build:
            return  # cancelled meanwhile: the modules are dropped, the model as it was
        self._build = None
        applied: Any = False
        if problem:
            app.notify(problem, severity="error", title="nothing changed")
            app._status(f"nothing changed: {problem}", "bold red")
        else:
            for new, module in zip(builds, modules, strict=True):
                new.attach(module)
            try:
                applied = app._apply(edit, confirmed=True)
            except KeyError as exc:  # a path the model does not have (a recipe's edit)
                app._status(f"nothing changed: no {exc} in the model", "bold red")
        if then is not None:
            then(applied is True)
