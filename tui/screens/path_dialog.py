"""The write dialog: one input for a file path, checked (and questioned) before it closes."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static
from textual.widgets.input import Selection

from modelbrowse.core.saving.names import extensions_text
from modelbrowse.tui.screens.type_ahead import TypeAhead
from modelbrowse.widgets.guarded import Guarded

PathCheck = Callable[[str], str | None]
"""Returns why a path cannot be used (or may not be what was meant), or None."""


class PathInput(Input):
    """An input for a path: ctrl+u clears the whole line, whatever is selected."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: run as it arrives. A plain binding runs once the key has come back up
        # from the input, after the characters typed right behind it went in.
        Binding("ctrl+u", "clear_line", "Clear the line", show=False, priority=True),
    ]

    def action_clear_line(self) -> None:
        self.value = ""
        self.cursor_position = 0


class PathDialog(TypeAhead, Guarded, ModalScreen[str | None]):
    """One input for a file path. The whole path starts selected, so that what is typed
    replaces it; `check` refuses a path, `question` asks about one: enter again writes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        value: str,
        check: PathCheck,
        question: PathCheck | None = None,
        hint: str = "",
        placeholder: str = "",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.check = check
        self.question = question
        self.hint = hint
        self.placeholder = placeholder or f"a path ending in {extensions_text()}"
        self._asked = ""  # the path whose question was shown: enter again on it goes on

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text, style="bold"))
            # Selected here, not on focus: a focus arriving after keys typed ahead would select
            # them, and the next key would replace them.
            yield PathInput(
                self.value,
                placeholder=self.placeholder,
                select_on_focus=False,
            )
            yield Static("", id="dialog-error")
            yield Static(
                Text(self.hint or "enter saves · escape cancels", style="dim"), id="dialog-hint"
            )

    def on_mount(self) -> None:
        field = self.query_one(Input)
        field.selection = Selection(0, len(field.value))
        self.set_focus(field)

    @on(Input.Changed)
    def _clear_error(self) -> None:
        self.query_one("#dialog-error", Static).update("")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        problem = self.check(text)
        if problem is not None:
            self._say(problem, "bold red")
            return
        question = self.question(text) if self.question is not None else None
        if question is not None and self._asked != text:
            self._asked = text
            self._say(f"{question} · enter again writes it so", "bold yellow")
            return
        self.dismiss(text)

    def _say(self, message: str, style: str) -> None:
        self.query_one("#dialog-error", Static).update(Text(message, style=style))

    def action_cancel(self) -> None:
        self.dismiss(None)
