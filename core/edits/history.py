"""The undo stack: edits applied in order, undone and redone, and what is unsaved."""

from __future__ import annotations

from torch import nn

from modelbrowse.core.edits.base import Edit, iter_code


class EditHistory:
    """Applies edits to one model and keeps them for undo, redo, the log and the recipe."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.done: list[Edit] = []
        self.undone: list[Edit] = []
        self._saved: list[Edit] = []

    def apply(self, edit: Edit) -> Edit:
        """Apply an edit; if it raises, the model is as it was and nothing is recorded."""
        edit.apply(self.model)
        self.done.append(edit)
        self.undone.clear()
        return edit

    def undo(self) -> Edit | None:
        if not self.done:
            return None
        edit = self.done.pop()
        edit.undo(self.model)
        self.undone.append(edit)
        return edit

    def redo(self) -> Edit | None:
        if not self.undone:
            return None
        edit = self.undone.pop()
        edit.apply(self.model)
        self.done.append(edit)
        return edit

    def mark_saved(self) -> None:
        self._saved = list(self.done)

    @property
    def unsaved(self) -> int:
        """Edits between the saved state and now, in either direction."""
        common = 0
        for mine, saved in zip(self.done, self._saved, strict=False):
            if mine is not saved:
                break
            common += 1
        return (len(self.done) - common) + (len(self._saved) - common)

    def code(self) -> str:
        """The applied edits as one Python snippet on `model`."""
        lines = ["import torch", "from torch import nn", ""]
        lines += list(iter_code(self.done))
        return "\n".join(lines) + "\n"
