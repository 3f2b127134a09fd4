"""`C`: the health check of what is open, in a worker, with its findings in a screen; choosing
one moves the tree's cursor to its tensor or module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelbrowse.tui.base import LOADING, AppBase
from modelbrowse.tui.screens.health import HealthScreen
from modelbrowse.widgets.module_tree import ModuleTree

if TYPE_CHECKING:
    from collections.abc import Callable

    from modelbrowse.core.health import HealthReport
    from modelbrowse.core.sources.base import Source


class HealthCheckActions(AppBase):
    """The check key and where a chosen finding leads."""

    def action_check(self) -> None:
        source = self.session.source
        if self.session.index is None or source is None or self.session.previewing:
            self.notify(LOADING, severity="warning")
            return
        if self.options.meta:
            self.notify(
                "--meta: the model has no values to check (open it without --meta)",
                severity="warning",
            )
            return
        if _reads_its_file(source):
            self._open_check(source, from_file=True)
        else:  # a model built from code: its tensors in memory, once they are real
            self._when_real(
                lambda: self._open_check(source, from_file=False),
                "initialising weights: the check runs when they are ready",
            )

    def _open_check(self, source: Source, from_file: bool) -> None:
        seed = self.session.init_seed
        model = None if from_file or self.session.index is None else self.session.index.model
        if from_file:
            title = f"Health check of {source.label}"
            if self.session.unsaved:
                title += " (as in its file: the unsaved edits are not in it)"
        else:
            title = f"Health check of {source.label} (its tensors in memory)"

        def make_report(cancelled: Callable[[], bool]) -> HealthReport:
            from modelbrowse.core.health import check_source

            return check_source(source, seed, model=model, cancelled=cancelled)

        self.push_screen(HealthScreen(title, make_report), self._finding_chosen)

    def _finding_chosen(self, path: str | None) -> None:
        if path is None or self.session.index is None:
            return
        tree = self.query_one(ModuleTree)
        if tree.filter_query and not tree.select_path(path):
            self._apply_filter("")
        if not tree.select_path(path):
            self.notify(f"{path} is not in the tree", severity="warning")


def _reads_its_file(source: Source) -> bool:
    """A checkpoint's weights (with or without an architecture) are checked as its file holds
    them: ties stored apart show there, and nothing is built."""
    from modelbrowse.core.sources.checkpoint import CheckpointSource

    return isinstance(source, CheckpointSource) and source.loaded.module is None
