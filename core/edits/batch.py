"""One edit over a selection: every match changed in one step, undone in one step.

The recipe records the edits it is made of, one by one, so a replay needs nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from modelbrowse.core.edits.base import Edit

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex


@dataclass
class Batch(Edit):
    """The same kind of edit on every module a selector matched."""

    path: str  # the selector, for the log
    edits: list[Edit] = field(default_factory=list)
    what: str = "edit"  # "freeze", "re-initialise", "replace with nn.Identity()", ...
    op: ClassVar[str] = "batch"

    def apply(self, model: nn.Module) -> None:
        """All or nothing: an edit that fails takes back those before it."""
        done: list[Edit] = []
        try:
            for edit in self.edits:
                edit.apply(model)
                done.append(edit)
        except BaseException:
            for edit in reversed(done):
                edit.undo(model)
            raise

    def undo(self, model: nn.Module) -> None:
        for edit in reversed(self.edits):
            edit.undo(model)

    def describe(self) -> str:
        count = len(self.edits)
        return f"{self.what} {count} module{'s' if count != 1 else ''} matching {self.path}"

    def as_code(self) -> list[str]:
        return [line for edit in self.edits for line in edit.as_code()]

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "selector": self.path, "edits": self.records()}

    def records(self) -> list[dict[str, Any]]:
        """What the recipe holds: the edits one by one."""
        return [record for edit in self.edits for record in edit.records()]

    @property
    def changes_structure(self) -> bool:
        return any(edit.changes_structure for edit in self.edits)

    def touched(self) -> list[str]:
        return [path for edit in self.edits for path in edit.touched()]

    def update_index(self, index: NodeIndex) -> None:
        if self.changes_structure:
            index.refresh_structure(self.touched())
            return
        for edit in self.edits:
            edit.update_index(index)
