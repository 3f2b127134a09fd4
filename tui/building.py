"""An edit's new modules built before it is applied: in a worker thread, with progress on the
status line, escape cancelling; only the finished modules reach the UI thread, where the edit
attaches them (fast) through the session, so undo and redo put back the same objects."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work

from modelbrowse.core.error_log import one_line
from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.tui.editing import EditActions

if TYPE_CHECKING:
    from torch import nn

    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.session import Build
    from modelbrowse.tui.base import Then


class BuildActions(EditActions):
    """Build what an edit needs off the UI thread, then apply it."""

    def cancel_build(self) -> bool:
        """Escape: drop the build in progress (its result is discarded); False when none."""
        if not self.session.cancel_build():
            return False
        self._status("nothing changed: the build was cancelled")
        return True

    def _build_first(self, edit: Edit, note: str, then: Then | None) -> bool:
        """Start building the modules `edit` still needs; False when it needs none. Once
        built, the edit is applied (and `then` told) on the UI thread."""
        build = self.session.begin_build(edit)
        if build is None:
            return False
        self._status(f"building {build.label}… · escape cancels", "bold")
        self._build_modules(build, note, then)
        return True

    @work(thread=True, group="build", exit_on_error=False)
    def _build_modules(self, build: Build, note: str, then: Then | None) -> None:
        from modelbrowse.core.sources.build_budget import (
            BuildCancelled,
            cancellable,
            check_cancelled,
        )

        def stopped() -> bool:  # escape, or the app quitting: nobody waits for the module
            return build.cancelled.is_set() or not self.is_running

        modules: list[nn.Module] = []
        problem = ""
        count = len(build.modules)
        try:
            with cancellable(stopped):
                for number, new in enumerate(build.modules, start=1):
                    check_cancelled(build.label)
                    if count > 1:
                        self.call_from_thread(self._progress, build, number, count)
                    modules.append(new.build())
        except BuildCancelled:
            return
        except ModelBrowseError as exc:
            problem = str(exc)
        except Exception as exc:  # out of memory, a constructor's own error: nothing applied
            problem = f"building {build.label} failed: {one_line(exc)}"
        if not stopped():
            self.call_from_thread(self._built, build, modules, problem, note, then)

    def _progress(self, build: Build, number: int, count: int) -> None:
        if self.session.building is build:
            message = f"building {build.label} ({number} of {count})… · escape cancels"
            self._status(message, "bold")

    def _built(
        self,
        build: Build,
        modules: list[nn.Module],
        problem: str,
        note: str,
        then: Then | None,
    ) -> None:
        if not self.session.end_build(build):
            return  # cancelled meanwhile: the modules are dropped, the model as it was
        applied: bool | None = False
        if problem:
            self.notify(problem, severity="error", title="nothing changed")
            self._status(f"nothing changed: {problem}", "bold red")
        else:
            for new, module in zip(build.modules, modules, strict=True):
                new.attach(module)
            try:
                applied = self._apply_noted(build.edit, note, True, None)
            except KeyError as exc:  # a path the model does not have (a recipe's edit)
                self._status(f"nothing changed: no {exc} in the model", "bold red")
        if then is not None:
            then(applied is True)
