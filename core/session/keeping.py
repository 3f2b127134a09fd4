"""Unsaved edits kept when the app is stopped, for the next session of the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelbrowse.core.edits.history import EditHistory
    from modelbrowse.core.sources.base import Source


def keep_unsaved(
    source: Source, seed: int | None, history: EditHistory, reason: str, command: str
) -> str:
    """Write the unsaved edits where the next session of this model finds them; what the
    last line says about them."""
    from modelbrowse.core.errors import ModelBrowseError
    from modelbrowse.core.recovery import keep_unsaved, reopen_command

    count = len(history.done)
    plural = "s" if count != 1 else ""
    try:
        path = keep_unsaved(source, seed, list(history.done), history.model, reason, command)
    except (OSError, ModelBrowseError) as exc:
        return f"; the {count} edit{plural} could not be kept: {exc}"
    return f"; {count} edit{plural} kept: {reopen_command(command, path)} reopens them"
