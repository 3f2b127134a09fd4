"""The edit keys: each builds a core edit, applies it through the history, refreshes the view."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.tui.screens.dialogs import (
    ConfirmDialog,
    ReinitAnswer,
    ReinitDialog,
    SpecAnswer,
    SpecDialog,
)
from modelbrowse.tui.screens.edit_log import EditLogScreen
from modelbrowse.widgets.module_tree import ModuleTree
from modelbrowse.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from collections.abc import Callable

    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.edits.batch import Batch
    from modelbrowse.core.edits.history import EditHistory
    from modelbrowse.core.selectors import Selection
    from modelbrowse.tui.app import ModelBrowseApp
    from modelbrowse.tui.building import Then


def describe(edit: Edit) -> str:
    """The edit in words, with what it did to tied or shared objects when it did any."""
    note = getattr(edit, "tie_note", "")
    return f"{edit.describe()} ({note})" if note else edit.describe()


class EditActions:
    """Mixed into the App: key actions that change the model, and what follows an edit."""

    history: EditHistory | None
    shape_status: str
    shape_failed: bool
    _pending: list[Callable[[], object]]  # what it returns is not used

    # --- helpers -------------------------------------------------------------------------------

    @property
    def _app(self) -> ModelBrowseApp:
        return self  # type: ignore[return-value]

    def _cursor(self) -> str | None:
        app = self._app
        if app.index is None:
            app.notify("the model is still loading", severity="warning")
            return None
        refusal = app.edit_refusal() or app.build_refusal()
        if refusal:
            app.notify(refusal, severity="warning", title="nothing changed")
            return None
        path: str | None = app.query_one(ModuleTree).cursor_path
        if path is None:
            app.notify("move the cursor to a module or tensor first", severity="warning")
        return path

    def _when_real(
        self,
        action: Callable[[], object],
        waiting: str = "initialising weights: the edit is applied when they are ready",
    ) -> None:
        """Run an action now if tensors are real, else once they are (and say so)."""
        app = self._app
        if self.history is not None:
            action()
            return
        self._pending.append(action)
        app._ensure_materialising()
        app.notify(waiting)

    def _weights_only(self, what: str) -> bool:
        """A checkpoint without an architecture: only tensor re-inits and key deletes apply."""
        if self._app.source is None or not self._app.source.weights_only:
            return False
        self._app.notify(
            f"{what} needs the architecture: open the checkpoint with --arch NAME "
            "(without it: i re-initialises a tensor, d deletes keys)",
            severity="warning",
        )
        return True

    def _status(self, message: str, style: str = "") -> None:
        self._app.query_one(StatusLine).say(message, style)

    def _apply(self, edit: Edit, confirmed: bool = False, then: Then | None = None) -> bool | None:
        """Apply an edit through the history: True when applied, False when not, None when it
        waits (for a question's answer, or for its new modules to be built; then `then` is
        told whether it was applied)."""
        app = self._app
        assert self.history is not None and app.index is not None
        from modelbrowse.core.edits.batch import Batch
        from modelbrowse.core.edits.modules import Replace

        refusal = app.build_refusal()
        if refusal:
            app.notify(refusal, severity="warning", title="nothing changed")
            return False
        index = app.index
        for part in edit.edits if isinstance(edit, Batch) else [edit]:
            if isinstance(part, Replace) and part.path in index and index.node(part.path).is_module:
                part.aliases = index.aliases(part.path)
        if isinstance(edit, Batch):
            also: list[str] = []
            consequence = self._batch_tie_consequence(edit)
        else:
            also = index.aliases_outside(edit.path)
            consequence = self._tie_consequence(edit, also)
        if consequence and not confirmed:

            def answered(yes: bool | None) -> None:
                if yes:
                    edit.tie_note = consequence  # type: ignore[attr-defined]
                    applied = self._apply(edit, confirmed=True, then=then)
                else:
                    self._status("nothing changed")
                    applied = False
                if then is not None and applied is not None:
                    then(applied)

            app.push_screen(ConfirmDialog(f"{consequence}. Go on?"), answered)
            return None
        if app._build_first(edit, then):
            return None  # applied once its modules are built, off the UI thread
        try:
            self.history.apply(edit)
        except ModelBrowseError as exc:
            app.notify(str(exc), severity="error", title="nothing changed")
            self._status(f"nothing changed: {exc}", "bold red")
            return False
        message = describe(edit)
        if also and not getattr(edit, "tie_note", ""):
            message += f" · also changes: {', '.join(also)}"
        self._after_change(edit, message)
        return True

    def _tie_consequence(self, edit: Edit, also: list[str]) -> str:
        """What a replace or re-init does to objects shared with the rest of the model, said
        before it is done: a replace unties them, a re-init changes both sides."""
        from modelbrowse.core.edits.modules import Replace
        from modelbrowse.core.edits.reinit import Reinit

        where = edit.path or "the model"
        if isinstance(edit, Replace):
            replaced = edit.aliases or [edit.path]
            kept = [p for p in also if not any(p == a or p.startswith(a + ".") for a in replaced)]
            if kept:
                return f"{where} shares objects with {', '.join(kept)}: this unties them"
        elif isinstance(edit, Reinit) and also:
            return f"{where} is tied to {', '.join(also)}: re-initialising changes both"
        return ""

    def _batch_tie_consequence(self, batch: Batch) -> str:
        """The first tie a selection's replace or re-init reaches, and how many more: asked
        once for the whole selection. Re-initialising both sides of a tie needs no question."""
        from modelbrowse.core.edits.modules import Replace
        from modelbrowse.core.edits.reinit import Reinit

        index = self._app.index
        assert index is not None
        paths = [part.path for part in batch.edits]

        def selected(alias: str) -> bool:
            return any(alias == p or alias.startswith(p + ".") or not p for p in paths)

        found = []
        for part in batch.edits:
            if not isinstance(part, Replace | Reinit):
                continue
            also = index.aliases_outside(part.path)
            if isinstance(part, Reinit):
                also = [alias for alias in also if not selected(alias)]
            consequence = self._tie_consequence(part, also)
            if consequence:
                found.append(consequence)
        if len(found) > 1:
            return f"{found[0]} (and {len(found) - 1} more like it)"
        return found[0] if found else ""

    def _after_change(self, edit: Edit, message: str) -> None:
        app = self._app
        assert self.history is not None and app.index is not None
        edit.update_index(app.index)
        tree = app.query_one(ModuleTree)
        if edit.changes_structure:
            tree.reload_parents(app.index, edit.touched())
        else:
            tree.refresh_labels()  # same lines, new counts: no re-layout of the tree
        if tree.filter_query:
            app._apply_filter(tree.filter_query)
        app._refresh_header()
        app._show_detail(tree.cursor_path or "")
        self._status(message)
        if edit.changes_structure:
            self.run_shape_check()

    # --- the shape check -----------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="shape-check")
    def run_shape_check(self) -> None:
        from modelbrowse.core.edits.shape_check import ShapeCheck, check_shapes
        from modelbrowse.core.example_inputs import input_dtypes, input_hint

        app = self._app
        example = app.example_input()
        if self.history is None or (app.source is not None and app.source.weights_only):
            return  # a checkpoint without an architecture cannot run
        model = self.history.model
        if example is None:
            hint = input_hint(model)
            result = ShapeCheck(
                None, f"shape check unavailable: no example input (--input-shape {hint})"
            )
        else:
            result = check_shapes(model, example.shapes, input_dtypes(model, example))
        app.call_from_thread(self._shape_checked, result)

    def _shape_checked(self, result: Any) -> None:
        app = self._app
        self.shape_failed = result.ok is False
        self.shape_status = result.message
        app._refresh_header()
        if result.ok is False:
            self._status(f"shape check failed: {result.message}", "bold red")

    # --- the edit keys -------------------------------------------------------------------------

    def action_reinit(self) -> None:
        from modelbrowse.core.edits.base import new_seed
        from modelbrowse.core.edits.reinit import RESET_PARAMETERS, SCHEME_NAMES, Reinit

        selection = self._selected()
        if selection is not None:
            self._reinit_selection(selection)
            return
        path = self._cursor()
        if path is None:
            return
        app = self._app
        assert app.index is not None
        if app.index.node(path).is_module and self._weights_only("re-initialising a module"):
            return
        unavailable: dict[str, str] = {}
        if not app.index.node(path).is_module:
            unavailable[RESET_PARAMETERS] = "modules only: choose a scheme"
        elif not self._resettable(path):
            unavailable[RESET_PARAMETERS] = "no module here has one"

        def chosen(answer: ReinitAnswer | None) -> None:
            if answer is not None:
                self._when_real(lambda: self._apply(Reinit(path, answer.scheme, answer.seed)))

        target = path or "the whole model"
        app.push_screen(ReinitDialog(target, SCHEME_NAMES, new_seed(), unavailable), chosen)

    def _resettable(self, path: str) -> bool:
        """Whether a module in the subtree at `path` has its own reset_parameters() (True
        while the modules are only what a file describes: that is not known yet)."""
        from modelbrowse.core.nodes import StandIn

        index = self._app.index
        assert index is not None
        for sub in index.subtree(path):
            obj = index.node(sub).obj
            if isinstance(obj, StandIn) or callable(getattr(obj, "reset_parameters", None)):
                return True
        return False

    # --- on a selection: every match in one undoable step ------------------------------------

    def _selected(self) -> Selection | None:
        selection: Selection | None = getattr(self._app, "module_selection", None)
        if self._app.build_refusal():
            return None  # the cursor's own check then says why nothing starts
        return selection if selection is not None and selection.paths else None

    def _apply_batch(self, selection: Selection, what: str, edits: list[Edit]) -> None:
        from modelbrowse.core.edits.batch import Batch

        if not edits:
            self._app.notify(f"nothing in the selection to {what}", severity="warning")
            return
        self._apply(Batch(selection.pattern, edits, what))

    def _reinit_selection(self, selection: Selection) -> None:
        from modelbrowse.core.edits.base import new_seed
        from modelbrowse.core.edits.reinit import SCHEME_NAMES, Reinit
        from modelbrowse.core.index_reading import outermost

        paths = outermost(selection.paths)
        if self._weights_only("re-initialising a module"):
            return

        def chosen(answer: ReinitAnswer | None) -> None:
            if answer is not None:
                edits: list[Edit] = [Reinit(p, answer.scheme, answer.seed) for p in paths]
                what = f"re-initialise with {answer.scheme}"
                self._when_real(lambda: self._apply_batch(selection, what, edits))

        title = f"{len(paths)} modules matching {selection.pattern}"
        self._app.push_screen(ReinitDialog(title, SCHEME_NAMES, new_seed()), chosen)

    def _replace_selection(self, selection: Selection) -> None:
        from modelbrowse.core.edits.modules import Replace
        from modelbrowse.core.index_reading import outermost

        paths = [p for p in outermost(selection.paths) if p]
        if self._weights_only("replacing"):
            return

        def chosen(answer: SpecAnswer | None) -> None:
            if answer is not None:
                edits: list[Edit] = [Replace(p, answer.spec) for p in paths]
                what = f"replace with {answer.spec}"
                self._when_real(lambda: self._apply_batch(selection, what, edits))

        title = f"replace {len(paths)} modules matching {selection.pattern}"
        self._app.push_screen(SpecDialog(title, "", self._spec_check), chosen)

    def _spec_check(self, text: str) -> str | None:
        from modelbrowse.core.edits.specs import build_module

        try:
            build_module(text, device="meta")
        except ModelBrowseError as exc:
            return str(exc)
        return None

    def action_replace(self) -> None:
        from modelbrowse.core.edits.specs import constructor_text

        selection = self._selected()
        if selection is not None:
            self._replace_selection(selection)
            return
        path = self._cursor()
        if path is None or self._weights_only("replacing"):
            return
        app = self._app
        assert app.index is not None
        node = app.index.node(path)
        if not node.is_module:
            app.notify("replace acts on modules: move to one", severity="warning")
            return
        if not path:
            app.notify("the root cannot be replaced from the app", severity="warning")
            return

        def chosen(answer: SpecAnswer | None) -> None:
            if answer is not None:
                from modelbrowse.core.edits.modules import Replace

                self._when_real(lambda: self._apply(Replace(path, answer.spec)))

        current = constructor_text(node.obj)
        hint = (
            ""
            if current
            else f"the arguments of this {node.type_name} cannot be read back: type the new module"
        )
        app.push_screen(SpecDialog(f"replace {path}", current, self._spec_check, hint=hint), chosen)

    def action_delete(self) -> None:
        from modelbrowse.core.edits.modules import Delete

        path = self._cursor()
        if path is None:
            return
        app = self._app
        assert app.index is not None
        if app.source is not None and app.source.weights_only:
            from modelbrowse.core.edits.weights import DeleteKeys

            if not path:
                app.notify("the root cannot be deleted", severity="warning")
                return
            self._when_real(lambda: self._apply(DeleteKeys(path)))
            return
        if not app.index.node(path).is_module:
            app.notify("delete acts on modules (it puts nn.Identity() there)", severity="warning")
            return
        if not path:
            app.notify("the root cannot be deleted", severity="warning")
            return
        self._when_real(lambda: self._apply(Delete(path)))

    def action_undo(self) -> None:
        self._step(undo=True)

    def action_redo(self) -> None:
        self._step(undo=False)

    def _step(self, undo: bool) -> None:
        app = self._app
        refusal = app.build_refusal()
        if refusal:
            app.notify(refusal, severity="warning", title="nothing changed")
            return
        if self.history is None:
            app.notify("nothing to undo" if undo else "nothing to redo", severity="warning")
            return
        edit = self.history.undo() if undo else self.history.redo()
        if edit is None:
            app.notify("nothing to undo" if undo else "nothing to redo", severity="warning")
            return
        self._after_change(edit, f"{'undid' if undo else 'redid'}: {describe(edit)}")

    def action_edit_log(self) -> None:
        entries: list[tuple[str, list[str]]] = []
        snippet = ""
        if self.history is not None:
            entries = [(describe(e), e.as_code()) for e in self.history.done]
            snippet = self.history.code()
        status = self._app.query_one(StatusLine)
        log = EditLogScreen(
            entries, snippet, self._app.copied_targets, status.history, to_messages=status.is_cut
        )
        self._app.push_screen(log)

    def action_quit_app(self) -> None:
        app = self._app
        unsaved = self.history.unsaved if self.history is not None else 0
        if not unsaved:
            app.exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                app.exit()

        plural = "s" if unsaved != 1 else ""
        question = f"{unsaved} unsaved edit{plural} will be lost. Quit anyway?"
        app.push_screen(ConfirmDialog(question), answered)
