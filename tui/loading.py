"""Loading: the model built on `meta` in a worker, shown, then materialised without blocking.

Torch is first imported here, in a worker, after the first paint; a weight file's keys' tree is
read before that, without torch (`core.structure`), and shown at once. The session
(`core/session/`) holds what was loaded and the state of the load; this part shows it.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from textual import work

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.session import LoadState, read_preview
from modelbrowse.tui.base import AppBase
from modelbrowse.widgets.detail_pane import DetailPane
from modelbrowse.widgets.model_header import ModelHeader
from modelbrowse.widgets.module_tree import ModuleTree

if TYPE_CHECKING:
    from pathlib import Path

    from modelbrowse.core.edits.shape_check import ShapeCheck
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.session import Opened
    from modelbrowse.core.sources.base import Source
    from modelbrowse.core.structure_index import StructureIndex


class LoadActions(AppBase):
    """Build, show and materialise the model."""

    @work(thread=True, exclusive=True, group="load")
    def load_model(self) -> None:
        preview = read_preview(self.options)
        if preview is not None:
            self.call_from_thread(self._show_preview, preview)
        try:
            if preview is None:
                self.call_from_thread(self._show_loading, "building model")
            opened = self.session.load(self._show_loading_from_thread)
        except ModelBrowseError as exc:
            self.call_from_thread(self._fail, str(exc))
            return
        except Exception as exc:  # never a traceback on the user's terminal
            detail = traceback.format_exc() if self.options.debug else ""
            self.call_from_thread(self._fail, f"unexpected error: {exc!r}", detail)
            return
        self.call_from_thread(self._show_opened, opened)

    def _show_loading_from_thread(self, what: str) -> None:
        self.call_from_thread(self._show_loading, what)

    def _show_preview(self, index: StructureIndex) -> None:
        """The keys' tree with its totals, while torch loads and the full open runs."""
        if not self.session.show_preview(index):
            return  # the full open was quicker
        self.query_one(DetailPane).set_source_info(index.structure.rows, [], [])
        self._refresh_header()
        self.query_one(ModuleTree).load(index)  # type: ignore[arg-type]
        self._show_detail("")

    def _swap_preview(self, shown: StructureIndex, index: NodeIndex) -> None:
        """The full open's index in place of the preview's: the same paths keep every line,
        the cursor and the filter; other paths reload the tree, keeping what they can."""
        tree = self.query_one(ModuleTree)
        same = list(shown.paths()) == list(index.paths())
        if same:
            tree.rebind(index)
        else:
            tree.reload(index)
            if tree.filter_query:
                self._apply_filter(tree.filter_query)
        self._show_detail(tree.cursor_path or "")

    def _show_loading(self, what: str) -> None:
        self.query_one(ModelHeader).show_loading(what)  # on the UI thread: the DOM is not shared

    def _fail(self, message: str, detail: str = "") -> None:
        self.session.failed()
        self._leave(message + (f"\n{detail}" if detail else ""), 2)

    def _show_opened(self, opened: Opened) -> None:
        session = self.session
        if opened.view is None:
            _settle_garbage_collector()
        shown = session.opened(opened)
        if session.load_state is LoadState.COMPARISON:
            self._show_comparison()
            return
        if session.load_state is LoadState.READY:
            self._start_history()
        elif session.load_state is LoadState.INITIALISING:
            self.materialise()
        self._show_source_info(opened.source)
        self._refresh_header()
        self.query_one(ModuleTree).source_marks = opened.source.marks
        if shown is not None:
            self._swap_preview(shown, opened.index)
        else:
            self.query_one(ModuleTree).load(opened.index)
            self._show_detail("")
        if opened.source.files:
            self.check_recipe_hashes(opened.source.files)
        self._queue_recipe_edits()  # first: nothing about other files can drop --recipe
        self._announce_kept_edits()

    def _show_comparison(self) -> None:
        """`A --diff B`: the union tree, each key marked with how it differs."""
        from modelbrowse.core.diff import diff_summary

        view, index = self.session.diff_view, self.session.index
        assert view is not None and index is not None
        rows = [
            ("A", self.options.source),
            ("B", self.options.diff or ""),
            ("diff", diff_summary(view.diffs)),
            ("marks", "- only in A, + only in B, ! shape, ≠ dtype, ~ values, = equal"),
        ]
        self.query_one(DetailPane).set_source_info(rows, [], [], title="comparison")
        self._refresh_header()
        tree = self.query_one(ModuleTree)
        tree.marks = {path: change.value for path, change in view.marks.items()}
        tree.load(index)
        self._show_detail("")

    @work(thread=True, group="recipe-hash")
    def check_recipe_hashes(self, files: list[Path]) -> None:
        """A file saved with a recipe beside it is hashed (off the UI thread: a large file takes
        seconds) and compared with the recipe's sha256: a changed file is an error, not silent."""
        from modelbrowse.core.recipe import check_recipe_beside

        for path in files:
            try:
                problem = check_recipe_beside(path)
            except ModelBrowseError as exc:
                problem = str(exc)
            if problem:
                self.call_from_thread(self._recipe_mismatch, problem)

    def _recipe_mismatch(self, problem: str) -> None:
        self.session.file_changed()
        self._refresh_header()
        self.notify(problem, title="file changed since it was saved", severity="error", timeout=30)

    def _show_source_info(self, source: Source) -> None:
        """A checkpoint's information and load report go below the root's details."""
        fit = source.fit
        report = fit.lines() if fit is not None and (not fit.fits or fit.casts) else []
        self.query_one(DetailPane).set_source_info(
            source.info, report, source.warnings, title=source.info_title
        )
        if fit is not None and not fit.fits:
            self.notify(f"{fit.summary()}: the root's details list them", severity="warning")

    @work(thread=True, exclusive=True, group="materialise")
    def materialise(self) -> None:
        """Build the model with real tensors and swap it in; paths stay the same."""
        try:
            index = self.session.build_real()
        except ModelBrowseError as exc:
            self.call_from_thread(self._fail, str(exc))
            return
        self.call_from_thread(self._swap_index, index)

    def _swap_index(self, index: NodeIndex) -> None:
        self.session.materialised(index)
        self._refresh_header()
        tree = self.query_one(ModuleTree)
        tree.rebind(index)
        _settle_garbage_collector()  # after the meta model was let go, so it is not kept frozen
        self._show_detail(tree.cursor_path or "")
        self._start_history()

    def _start_history(self) -> None:
        """Edits act on real tensors: run what waited for them, check shapes once."""
        for action in self.session.start_history():
            action()
        self.run_shape_check()

    # --- the shape check -----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="shape-check")
    def run_shape_check(self) -> None:
        result = self.session.check_shapes()
        if result is not None:
            self.call_from_thread(self._shape_checked, result)

    def _shape_checked(self, result: ShapeCheck) -> None:
        self.session.shape_checked(result)
        self._refresh_header()
        if result.ok is False:
            self._status(f"shape check failed: {result.message}", "bold red")

    def on_unmount(self) -> None:
        """The app stops: its model may go (the collector was settled around it)."""
        _release_garbage_collector()


# Collections of the middle generation between two full ones (Python's default: 10).
FULL_COLLECTION_EVERY = 100
# The collector's thresholds before the first model was settled; None while none is.
_saved_threshold: tuple[int, int, int] | None = None


def _settle_garbage_collector() -> None:
    """Move the model's objects out of the cyclic collector's way once it is built.

    Every full collection walks every object; for a model of 100,000 modules that is millions
    of objects and a few hundred milliseconds, due again whenever an edit allocates much.
    The model lives as long as the app, so it is frozen (objects freed by reference count
    are still freed) until the app stops (`_release_garbage_collector`). A full collection
    still walks what was born since, mostly Textual's line caches: 20,000 objects, 8-13 ms, a
    dropped frame every 50 or so presses of a held key; full collections are made ten times
    rarer (the youngest generations are collected as before).
    """
    import gc

    global _saved_threshold
    if _saved_threshold is None:
        _saved_threshold = gc.get_threshold()
    gc.freeze()
    young, middle, _ = _saved_threshold
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def _release_garbage_collector() -> None:
    """Undo `_settle_garbage_collector`: the collector is process-wide, and what was frozen
    (the app, its widgets, the model, in reference cycles) is never freed while frozen."""
    import gc

    global _saved_threshold
    if _saved_threshold is None:
        return
    gc.unfreeze()
    gc.set_threshold(*_saved_threshold)
    _saved_threshold = None
