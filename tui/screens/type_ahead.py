"""Keys typed before a dialog is ready go into its input, not nowhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import events
from textual.widgets import Input

if TYPE_CHECKING:
    from textual.widget import Widget


class TypeAhead:
    """Mixed into a dialog whose input takes the focus when it mounts.

    Keys typed right after the key that opens the dialog reach the screen before its input has
    the focus (the terminal sends them together: `w` then a path). A printable one that comes
    to the screen itself, not through the input (which keeps those it types), is typed into
    the focused input here; enter and the editing keys reach the input's bindings as they are.
    """

    focused: Widget | None

    def on_key(self, event: events.Key) -> None:
        field = self.focused
        if not isinstance(field, Input) or not event.is_printable or event.character is None:
            return
        event.stop()
        event.prevent_default()
        start, end = sorted(field.selection)
        field.replace(event.character, start, end)
