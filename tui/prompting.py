"""The prompt's keys: `:` goes to a path, `/` filters the tree, `*` (or `m`) selects modules by
pattern, marked as it is typed; escape clears; `Y` copies the selection's target_modules."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.units import printable
from modelbrowse.tui.base import LOADING, AppBase
from modelbrowse.widgets.key_footer import KeyFooter
from modelbrowse.widgets.module_tree import ModuleTree
from modelbrowse.widgets.prompt_bar import PromptBar, PromptMode

SELECTED = "●"
# Filtering and selecting as one types are for models whose index is walked in a few ms.
LIVE_FILTER_LIMIT = 50_000
LIVE_SELECT_LIMIT = 50_000
# The selection's pattern in the footer is cut to this many characters.
FOOTER_PATTERN_CHARS = 30


class PromptActions(AppBase):
    """Go to, filter, select: the prompt bar's modes, and what they leave armed."""

    _matches: Sequence[str] = ()  # the filter's matches, for n and N

    def _mount_prompt_bar(self) -> None:
        self.mount(PromptBar(id="prompt-bar"), before="#status")

    def _open_prompt(self, mode: PromptMode, value: str = "") -> None:
        if self.session.index is None:
            self.notify(LOADING, severity="warning")
            return
        self.query_one(PromptBar).open(mode, value)

    def _close_prompt(self) -> None:
        self.query_one(PromptBar).close()
        self.screen.set_focus(self.query_one(ModuleTree))

    def action_goto(self) -> None:
        self._open_prompt(PromptMode.GOTO)

    def action_filter(self) -> None:
        self._open_prompt(PromptMode.FILTER, self.query_one(ModuleTree).filter_query)

    def action_select(self) -> None:
        current = self.session.selection.current
        self._open_prompt(PromptMode.SELECT, current.pattern if current else "")

    @on(PromptBar.Changed)
    def _prompt_changed(self, event: PromptBar.Changed) -> None:
        index = self.session.index
        if event.mode is PromptMode.FILTER and index and len(index) <= LIVE_FILTER_LIMIT:
            self._apply_filter(event.value)
        elif event.mode is PromptMode.SELECT:
            self._preview_selection(event.value)

    @on(PromptBar.Submitted)
    def _prompt_submitted(self, event: PromptBar.Submitted) -> None:
        if event.mode is PromptMode.GOTO:
            self._goto(event.value)
        elif event.mode is PromptMode.FILTER:
            self._apply_filter(event.value)
            self._close_prompt()
        elif event.mode is PromptMode.SELECT and self._preview_selection(event.value, final=True):
            self._close_prompt()

    def _goto(self, text: str) -> None:
        assert self.session.index is not None
        tree = self.query_one(ModuleTree)
        try:
            node = self.session.index.find(text)
        except ModelBrowseError as exc:
            self.query_one(PromptBar).show_error(str(exc))
            return
        if tree.filter_query and not tree.select_path(node.path):
            self._apply_filter("")
        self._close_prompt()
        tree.select_path(node.path)

    def _apply_filter(self, query: str) -> None:
        assert self.session.index is not None
        query = query.strip()
        matches = self.session.index.search(query) if query else []
        self._matches = matches
        self.query_one(ModuleTree).apply_filter(query, matches)
        if query:
            count = len(matches)
            self._status_transient(
                f"filter '{printable(query)}': {count} "
                f"match{'es' if count != 1 else ''} · n/N next/previous · escape clears"
            )
        else:
            self._status_transient("")

    def _jump_match(self, step: int) -> None:
        if not self._matches:
            self.notify("no filter matches: press / to filter", severity="warning")
            return
        tree = self.query_one(ModuleTree)
        current = tree.cursor_path
        order = {path: i for i, path in enumerate(self._matches)}
        if current in order:
            target = self._matches[(order[current] + step) % len(self._matches)]
        else:
            target = self._matches[0 if step > 0 else -1]
        tree.select_path(target)

    def action_next_match(self) -> None:
        self._jump_match(1)

    def action_previous_match(self) -> None:
        self._jump_match(-1)

    def action_clear(self) -> None:
        """Escape: cancel a build or a probe, else close the prompt, else drop the selection,
        else the filter; one press each."""
        mode = self.query_one(PromptBar).mode if self.query(PromptBar) else None
        if mode is None and (self.cancel_build() or self.cancel_probe()):
            return
        if mode is not None:
            if mode is PromptMode.SELECT:
                self.clear_module_selection()  # escape cancels what was being typed
            self._close_prompt()
            return
        if self.clear_module_selection():
            return
        if self.query_one(ModuleTree).filter_query:
            self._apply_filter("")

    # --- the selection -------------------------------------------------------------------------

    def _preview_selection(self, text: str, final: bool = False) -> bool:
        """Mark what `text` matches in the tree and count it; False (and the error under the
        prompt) when it cannot be read."""
        index = self.session.index
        assert index is not None
        if not text.strip():
            self.clear_module_selection()
            return True
        if not final and len(index) > LIVE_SELECT_LIMIT:
            return True
        tree = self.query_one(ModuleTree)
        try:
            selection = self.session.selection.select(index, text, tree.cursor_path)
        except ModelBrowseError as exc:
            self.query_one(PromptBar).show_error(str(exc))
            if final:  # nothing half-typed stays selected for f, i or e to act on
                self.clear_module_selection()
            return False
        tree.marks = {path: SELECTED for path in selection.paths}
        tree.refresh_labels()
        hint = " · f i e act on all · Y copies target_modules · escape clears"
        summary = printable(selection.summary(), 300)
        self._status_transient(summary + (hint if selection.paths else ""))
        self._show_selection_in_footer()
        return True

    def _show_selection_in_footer(self) -> None:
        """While a selection is armed, the footer says so: the edit keys act on it."""
        current = self.session.selection.current
        note = ""
        if current is not None:
            pattern = printable(current.pattern, FOOTER_PATTERN_CHARS)
            note = f"{SELECTED} {pattern} ({len(current.paths)}) · esc clears"
        self.query_one(KeyFooter).show_note(note)

    def clear_module_selection(self) -> bool:
        """Drop the selection; False when there was none."""
        tree = self.query_one(ModuleTree)
        if not self.session.selection.clear() and not tree.marks:
            return False
        tree.marks = {}
        tree.refresh_labels()
        self._status_transient("")
        self._show_selection_in_footer()
        return True

    def _cursor_moved(self, path: str | None) -> None:
        """A cursor moved to a node outside the selection ends it."""
        selection = self.session.selection.current
        if selection is not None and self.session.selection.moved_to(path):
            self.clear_module_selection()
            self._status(f"selection {printable(selection.pattern, 300)} ended: the cursor left it")

    def action_copy_targets(self) -> None:
        """`Y`: the selection as a PEFT-style `target_modules` list."""
        text = None
        if self.session.index is not None:
            text = self.session.selection.copy_targets(self.session.index)
        if text is None:
            self.notify("nothing selected: * selects modules by pattern", severity="warning")
            return
        self.copy_to_clipboard(text)
        self._status_transient(f"copied {printable(text, 300)} (L shows it again)")
