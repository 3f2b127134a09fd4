"""The edit keys: each asks the session what it would do, asks the user what it must, applies
the edit through the session, and refreshes the view."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.session import plans
from modelbrowse.tui.base import LOADING, AppBase
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
    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.selectors import Selection
    from modelbrowse.core.session import ApplyResult
    from modelbrowse.tui.base import Then


class EditActions(AppBase):
    """Key actions that change the model, and what follows a change."""

    # --- helpers -------------------------------------------------------------------------------

    def _cursor(self) -> str | None:
        """The path an edit key acts on, or None (and why, said)."""
        if self.session.index is None:
            self.notify(LOADING, severity="warning")
            return None
        refusal = self.session.edit_refusal()
        if refusal:
            self.notify(refusal, severity="warning", title="nothing changed")
            return None
        path: str | None = self.query_one(ModuleTree).cursor_path
        if path is None:
            self.notify("move the cursor to a module or tensor first", severity="warning")
        return path

    def _selected(self) -> Selection | None:
        """The armed selection the key acts on; a cursor moved out of it has ended it."""
        self._cursor_moved(self.query_one(ModuleTree).cursor_path)
        return self.session.armed()

    def _weights_only(self, what: str) -> bool:
        refusal = self.session.weights_only_refusal(what)
        if refusal:
            self.notify(refusal, severity="warning")
        return refusal is not None

    def _apply(
        self, edit: Edit, confirmed: bool = False, then: Then | None = None, quiet: bool = False
    ) -> bool | None:
        """Apply an edit: True when applied, False when not, None when it waits (for a
        question's answer, or for its new modules to be built; then `then` is told whether it
        was applied). `quiet`: an edit that makes no sense raises, for the caller to say."""
        return self._apply_noted(edit, "", confirmed, then, quiet)

    def _apply_noted(
        self, edit: Edit, note: str, confirmed: bool, then: Then | None, quiet: bool = False
    ) -> bool | None:
        refusal = self.session.build_refusal()
        if refusal:
            self.notify(refusal, severity="warning", title="nothing changed")
            return False
        question = self.session.tie_question(edit)
        if question and not confirmed:

            def answered(yes: bool | None) -> None:
                if yes:
                    applied = self._apply_noted(edit, question, True, then)
                else:
                    self._status("nothing changed")
                    applied = False
                if then is not None and applied is not None:
                    then(applied)

            self.push_screen(ConfirmDialog(f"{question}. Go on?"), answered)
            return None
        if self._build_first(edit, note, then):
            return None  # applied once its modules are built, off the UI thread
        try:
            result = self.session.apply(edit, note)
        except ModelBrowseError as exc:
            if quiet:
                raise
            self.notify(str(exc), severity="error", title="nothing changed")
            self._status(f"nothing changed: {exc}", "bold red")
            return False
        self._after_change(result)
        return True

    def _after_change(self, result: ApplyResult) -> None:
        index = self.session.index
        assert index is not None
        edit = result.edit
        tree = self.query_one(ModuleTree)
        if edit.changes_structure:
            tree.reload_parents(index, edit.touched())
        else:
            tree.refresh_labels()  # same lines, new counts: no re-layout of the tree
        if tree.filter_query:
            self._apply_filter(tree.filter_query)
        self._refresh_header()
        self._show_detail(tree.cursor_path or "")
        self._status(result.message)
        if edit.changes_structure:
            self.run_shape_check()

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
        index = self.session.index
        assert index is not None
        if index.node(path).is_module and self._weights_only("re-initialising a module"):
            return
        unavailable: dict[str, str] = {}
        if not index.node(path).is_module:
            unavailable[RESET_PARAMETERS] = "modules only: choose a scheme"
        elif not plans.resettable(index, path):
            unavailable[RESET_PARAMETERS] = "no module here has one"

        def chosen(answer: ReinitAnswer | None) -> None:
            if answer is not None:
                self._when_real(lambda: self._apply(Reinit(path, answer.scheme, answer.seed)))

        target = path or "the whole model"
        self.push_screen(ReinitDialog(target, SCHEME_NAMES, new_seed(), unavailable), chosen)

    def _apply_batch(self, selection: Selection, what: str, edits: list[Edit]) -> None:
        from modelbrowse.core.edits.batch import Batch

        if not edits:
            self.notify(f"nothing in the selection to {what}", severity="warning")
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
        self.push_screen(ReinitDialog(title, SCHEME_NAMES, new_seed()), chosen)

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
        self.push_screen(SpecDialog(title, "", plans.spec_problem), chosen)

    def action_replace(self) -> None:
        from modelbrowse.core.edits.specs import constructor_text

        selection = self._selected()
        if selection is not None:
            self._replace_selection(selection)
            return
        path = self._cursor()
        if path is None or self._weights_only("replacing"):
            return
        index = self.session.index
        assert index is not None
        refusal = plans.replace_refusal(index, path)
        if refusal:
            self.notify(refusal, severity="warning")
            return

        def chosen(answer: SpecAnswer | None) -> None:
            if answer is not None:
                from modelbrowse.core.edits.modules import Replace

                self._when_real(lambda: self._apply(Replace(path, answer.spec)))

        node = index.node(path)
        current = constructor_text(node.obj)
        hint = (
            ""
            if current
            else f"the arguments of this {node.type_name} cannot be read back: type the new module"
        )
        dialog = SpecDialog(f"replace {path}", current, plans.spec_problem, hint=hint)
        self.push_screen(dialog, chosen)

    def action_delete(self) -> None:
        from modelbrowse.core.edits.modules import Delete

        path = self._cursor()
        if path is None:
            return
        session = self.session
        assert session.index is not None
        if session.source is not None and session.source.weights_only:
            from modelbrowse.core.edits.weights import DeleteKeys

            if not path:
                self.notify("the root cannot be deleted", severity="warning")
                return
            self._when_real(lambda: self._apply(DeleteKeys(path)))
            return
        if not session.index.node(path).is_module:
            self.notify("delete acts on modules (it puts nn.Identity() there)", severity="warning")
            return
        if not path:
            self.notify("the root cannot be deleted", severity="warning")
            return
        self._when_real(lambda: self._apply(Delete(path)))

    def action_undo(self) -> None:
        self._step(undo=True)

    def action_redo(self) -> None:
        self._step(undo=False)

    def _step(self, undo: bool) -> None:
        refusal = self.session.build_refusal()
        if refusal:
            self.notify(refusal, severity="warning", title="nothing changed")
            return
        result = self.session.undo() if undo else self.session.redo()
        if result is None:
            self.notify("nothing to undo" if undo else "nothing to redo", severity="warning")
            return
        self._after_change(result)

    def action_edit_log(self) -> None:
        entries, snippet = self.session.log()
        status = self.query_one(StatusLine)
        log = EditLogScreen(
            entries,
            snippet,
            self.session.selection.copied,
            status.history,
            to_messages=status.is_cut,
        )
        self.push_screen(log)

    def action_quit_app(self) -> None:
        unsaved = self.session.unsaved
        if not unsaved:
            self.exit()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        plural = "s" if unsaved != 1 else ""
        question = f"{unsaved} unsaved edit{plural} will be lost. Quit anyway?"
        self.push_screen(ConfirmDialog(question), answered)
