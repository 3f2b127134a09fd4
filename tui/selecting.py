"""The selector (`*`): see what a pattern hits as it is typed, then act on every match at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import Static

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.units import printable
from modelbrowse.widgets.module_tree import ModuleTree

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.selectors import Selection

SELECTED = "●"
# Matching as one types is for models whose index is walked in a few milliseconds.
LIVE_SELECT_LIMIT = 50_000
PLACEHOLDER = "* select: features.*, *.attn.qkv, qkv, re:.*mlp.*, cls:Linear, all-linear"


class SelectActions:
    """Mixed into the App: `*` or `m` opens the selector, `Y` copies its target_modules."""

    index: NodeIndex | None
    _prompt_mode: str | None
    _open_prompt: Any
    _close_prompt: Any
    query_one: Any
    notify: Any
    copy_to_clipboard: Any

    def _init_selection(self) -> None:
        self.module_selection: Selection | None = None
        self.copied_targets: list[str] = []  # shown in the edit log

    def action_select(self) -> None:
        current = self.module_selection.pattern if self.module_selection else ""
        self._open_prompt("select", PLACEHOLDER, current)

    def _preview_selection(self, text: str, final: bool = False) -> bool:
        """Mark what `text` matches in the tree and count it; False (and the error under the
        prompt) when it cannot be read."""
        from modelbrowse.core.selectors import select

        assert self.index is not None
        if not text.strip():
            self.clear_module_selection()
            return True
        if not final and len(self.index) > LIVE_SELECT_LIMIT:
            return True
        try:
            selection = select(self.index, text)
        except ModelBrowseError as exc:
            self.query_one("#prompt-error", Static).update(Text(str(exc), style="bold red"))
            if final:  # nothing half-typed stays selected for f, i or e to act on
                self.clear_module_selection()
            return False
        self.module_selection = selection if selection.paths else None
        tree = self.query_one(ModuleTree)
        tree.marks = {path: SELECTED for path in selection.paths}
        tree.refresh_labels()
        hint = " · f i e act on all · Y copies target_modules · escape clears"
        summary = printable(selection.summary(), 300)
        self._selection_status(summary + (hint if selection.paths else ""))
        return True

    def clear_module_selection(self) -> bool:
        """Drop the selection; False when there was none."""
        if self.module_selection is None and not self.query_one(ModuleTree).marks:
            return False
        self.module_selection = None
        tree = self.query_one(ModuleTree)
        tree.marks = {}
        tree.refresh_labels()
        self._selection_status("")
        return True

    def _selection_status(self, message: str) -> None:
        self.query_one("#status", Static).update(Text(message))

    def action_copy_targets(self) -> None:
        """`Y`: the selection as a PEFT-style `target_modules` list."""
        if self.module_selection is None or self.index is None:
            self.notify("nothing selected: * selects modules by pattern", severity="warning")
            return
        names = self.module_selection.target_modules(self.index)
        text = f"target_modules={names!r}"
        self.copy_to_clipboard(text)
        self.copied_targets.append(f"# {self.module_selection.pattern}\n{text}")
        self._selection_status(f"copied {printable(text, 300)} (L shows it again)")
