"""The selection (`*`): the modules a pattern hits, armed for the edit keys until the cursor
leaves it or it is cleared."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelbrowse.core.index_reading import IndexReading
    from modelbrowse.core.selectors import Selection


class SelectionState:
    """The armed selection, where the cursor was when it was made, and what `Y` copied."""

    def __init__(self) -> None:
        self.current: Selection | None = None
        self.copied: list[str] = []  # each `Y`, for the edit log
        self._cursor: str | None = None

    def select(self, index: IndexReading, pattern: str, cursor: str | None) -> Selection:
        """Select the modules `pattern` hits (none: nothing is armed); raises
        `ModelBrowseError` when the pattern cannot be read."""
        from modelbrowse.core.selectors import select

        selection = select(index, pattern)
        self.current = selection if selection.paths else None
        self._cursor = cursor
        return selection

    def clear(self) -> bool:
        """Drop the selection; False when there was none."""
        had, self.current = self.current is not None, None
        return had

    def inside(self, path: str) -> bool:
        """Whether `path` is a selected module or lies under one."""
        paths = self.current.paths if self.current is not None else []
        return any(not p or path == p or path.startswith(p + ".") for p in paths)

    def moved_to(self, path: str | None) -> bool:
        """The cursor is on `path` now: a move to a node outside the selection ends it (the
        keys would act on the selection, not where the cursor is). True when it did."""
        if path == self._cursor:
            return False
        self._cursor = path
        if self.current is None or path is None or self.inside(path):
            return False
        self.current = None
        return True

    def copy_targets(self, index: IndexReading) -> str | None:
        """The selection as a PEFT-style `target_modules` line, kept for the edit log."""
        if self.current is None:
            return None
        text = f"target_modules={self.current.target_modules(index)!r}"
        self.copied.append(f"# {self.current.pattern}\n{text}")
        return text
