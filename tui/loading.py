"""Loading: the model built on `meta` in a worker, shown, then materialised without blocking.

Mixed into the App. Torch is first imported here, in a worker, after the first paint; a weight
file's keys' tree is read before that, without torch (`core.structure`), and shown at once.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from textual import work

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.units import human_count
from modelbrowse.widgets.detail_pane import DetailPane
from modelbrowse.widgets.model_header import ModelHeader
from modelbrowse.widgets.module_tree import ModuleTree

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from modelbrowse.core.diff import DiffView
    from modelbrowse.core.edits.history import EditHistory
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.sources.base import Source
    from modelbrowse.core.structure_index import StructureIndex
    from modelbrowse.tui.options import AppOptions

# Random initialisation above this many parameters waits until real values are needed.
EAGER_MATERIALISE_LIMIT = 100_000_000


class LoadActions:
    """Mixed into the App: build, show and materialise the model; what may change it."""

    options: AppOptions
    index: NodeIndex | None
    previewing: bool
    source: Source | None
    state: str
    materialising: bool
    history: EditHistory | None
    init_seed: int | None
    error_message: str | None
    header_warning: str
    shape_status: str
    shape_failed: bool
    diff_view: DiffView | None
    _pending: list[Callable[[], object]]  # what it returns is not used
    query_one: Any
    call_from_thread: Any
    notify: Any
    exit: Any
    run_shape_check: Any
    _show_detail: Any
    _apply_filter: Any
    _read_recipe_edits: Any
    _queue_recipe_edits: Any
    _announce_kept_edits: Any

    @work(thread=True, exclusive=True, group="load")
    def load_model(self) -> None:
        preview = self._read_preview()
        if preview is not None:
            self.call_from_thread(self._show_preview, preview)
        try:
            from modelbrowse.core.index import NodeIndex

            if preview is None:
                self.call_from_thread(self._show_loading, "building model")
            source = self.options.resolve()
            from modelbrowse.core.edits.base import new_seed

            if self.init_seed is None:
                self.init_seed = new_seed()
            if self.options.diff is not None:
                self._load_diff(source, self.options.diff)
                return
            self._read_recipe_edits(source)
            model, is_meta = source.build_structure(self.init_seed)
            index = NodeIndex(model)
        except ModelBrowseError as exc:
            self.call_from_thread(self._fail, str(exc))
            return
        except Exception as exc:  # never a traceback on the user's terminal
            detail = traceback.format_exc() if self.options.debug else ""
            self.call_from_thread(self._fail, f"unexpected error: {exc!r}", detail)
            return
        self.call_from_thread(self._show_index, source, index, is_meta)

    def _read_preview(self) -> StructureIndex | None:
        """A weight file's tree from its bytes alone, before torch is imported; None when only
        the full open can show it (then the app waits for that, as before)."""
        try:
            return self.options.read_structure()
        except Exception:  # the preview is a head start, never a failure: the full open decides
            return None

    def _show_preview(self, index: StructureIndex) -> None:
        """The keys' tree with its totals, while torch loads and the full open runs."""
        if self.index is not None:
            return  # the full open was quicker
        self.previewing = True
        self.index = index  # type: ignore[assignment]  # the read side of a NodeIndex
        self.state = "loading torch: values follow"
        self.query_one(DetailPane).set_source_info(index.structure.rows, [], [])
        self._refresh_header()
        self.query_one(ModuleTree).load(index)  # type: ignore[arg-type]
        self._show_detail("")

    def _swap_preview(self, shown: Any, index: NodeIndex) -> None:
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

    def _load_diff(self, source: Source, other_spec: str) -> None:
        """`A --diff B`: read both (every tensor), then show the union tree, marked."""
        from modelbrowse.core.diff import diff_view
        from modelbrowse.core.index import NodeIndex

        other = self.options.resolve(other_spec)
        self.call_from_thread(self._show_loading, "comparing every tensor")
        view = diff_view(source, other, 0 if self.options.seed is None else self.options.seed)
        index = NodeIndex(view.model)
        self.call_from_thread(self._show_diff, source, view, index)

    def _show_diff(self, source: Source, view: DiffView, index: NodeIndex) -> None:
        from modelbrowse.core.diff import diff_summary

        self.diff_view = view
        self.source = source
        self.index = index
        self.state = "comparison: read-only"
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

    def _show_loading(self, what: str) -> None:
        self.query_one(ModelHeader).show_loading(what)  # on the UI thread: the DOM is not shared

    def _fail(self, message: str, detail: str = "") -> None:
        self.previewing = False
        self.error_message = message + (f"\n{detail}" if detail else "")
        self.exit(return_code=2)

    def _show_index(self, source: Source, index: NodeIndex, is_meta: bool) -> None:
        _settle_garbage_collector()
        shown, self.previewing = (self.index if self.previewing else None), False
        self.source = source
        self.index = index
        params = index.totals().params
        if not is_meta:
            self.state = "pretrained" if source.weights else ""
            self._start_history()
        elif self.options.meta:
            self.state = "meta: shapes only, no values"
        elif params <= EAGER_MATERIALISE_LIMIT:
            self.state = "initialising weights"
            self.materialise()
        else:
            self.state = f"structure only: values load when needed ({human_count(params)} params)"
        self._show_source_info(source)
        self._refresh_header()
        self.query_one(ModuleTree).source_marks = source.marks
        if shown is not None:
            self._swap_preview(shown, index)
        else:
            self.query_one(ModuleTree).load(index)
            self._show_detail("")
        if source.files:
            self.check_recipe_hashes(source.files)
        self._queue_recipe_edits()  # first: nothing about other files can drop --recipe
        self._announce_kept_edits(source)

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
        self.header_warning = "the file differs from its recipe"
        self._refresh_header()
        self.notify(problem, title="file changed since it was saved", severity="error", timeout=30)

    def _show_source_info(self, source: Source) -> None:
        """A checkpoint's information and load report go below the root's details."""
        fit = source.fit
        report = fit.lines() if fit is not None and (not fit.fits or fit.casts) else []
        warnings = source.warnings
        self.query_one(DetailPane).set_source_info(
            source.info, report, warnings, title=source.info_title
        )
        if warnings:
            self.header_warning = warnings[0]
        if fit is not None and not fit.fits:
            self.notify(f"{fit.summary()}: the root's details list them", severity="warning")

    @work(thread=True, exclusive=True, group="materialise")
    def materialise(self) -> None:
        """Build the model with real tensors and swap it in; paths stay the same."""
        assert self.source is not None
        from modelbrowse.core.index import NodeIndex

        self.materialising = True
        try:
            model = self.source.build_real(self.init_seed)
            index = NodeIndex(model)
        except ModelBrowseError as exc:
            self.call_from_thread(self._fail, str(exc))
            return
        finally:
            self.materialising = False
        self.call_from_thread(self._swap_index, index)

    def _swap_index(self, index: NodeIndex) -> None:
        self.index = index
        self.state = "random init" if self.source and self.source.kind == "torchvision" else ""
        self._refresh_header()
        tree = self.query_one(ModuleTree)
        tree.rebind(index)
        _settle_garbage_collector()  # after the meta model was let go, so it is not kept frozen
        self._show_detail(tree.cursor_path or "")
        self._start_history()

    def _start_history(self) -> None:
        """Edits act on real tensors: start the history, run queued edits, check shapes once."""
        from modelbrowse.core.edits.history import EditHistory

        assert self.index is not None
        self.history = EditHistory(self.index.model)
        pending, self._pending = self._pending, []
        for action in pending:
            action()
        self.run_shape_check()

    def on_unmount(self) -> None:
        """The app stops: its model may go (the collector was settled around it)."""
        _release_garbage_collector()

    def meta_refusal(self) -> str | None:
        """With --meta, why nothing can be edited or written; None when there are values."""
        if self.options.meta and self.index is not None and self.index.is_meta:
            return "--meta: the model has no values to edit or write (open it without --meta)"
        return None

    def edit_refusal(self) -> str | None:
        """Why nothing may change at all (--meta, a TorchScript model), or None."""
        if self.previewing:
            return "the model is still loading"
        if self.source is None:
            return self.meta_refusal()
        return self.meta_refusal() or self.source.edit_refusal

    def _ensure_materialising(self) -> None:
        if self.options.meta:
            return
        if self.index is not None and self.index.is_meta and not self.materialising:
            self.materialising = True
            self.state = "initialising weights"
            self._refresh_header()
            self.materialise()

    def _refresh_header(self) -> None:
        if self.index is None:
            return
        unsaved = self.history.unsaved if self.history is not None else 0
        shape = self.shape_status
        if self.shape_failed:
            shape = f"shape check failed: {shape}"
        self.query_one(ModelHeader).show_index(
            self.index, self.state, unsaved, shape, self.shape_failed, self.header_warning
        )


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
