"""The prompt at the bottom: go to a path, filter the tree, or select modules by pattern."""

from __future__ import annotations

import enum

from rich.text import Text
from textual import on
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, Static


class PromptMode(enum.Enum):
    """What the prompt's text is for; the value is its placeholder."""

    GOTO = ": go to a path, e.g. features.0.weight or classifier[6]"
    FILTER = "/ filter by path or class name"
    SELECT = "* select: features.*, *.attn.qkv, qkv, re:.*mlp.*, cls:Linear, all-linear"


class PromptBar(Vertical):
    """An input with a line for its error above it; hidden until opened. It says what is typed
    and submitted, with the mode it was typed in."""

    class Changed(Message):
        def __init__(self, mode: PromptMode, value: str) -> None:
            super().__init__()
            self.mode = mode
            self.value = value

    class Submitted(Message):
        def __init__(self, mode: PromptMode, value: str) -> None:
            super().__init__()
            self.mode = mode
            self.value = value

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Static("", id="prompt-error"), Input(id="prompt"), id=id)
        self.mode: PromptMode | None = None
        self.display = False

    def open(self, mode: PromptMode, value: str = "") -> None:
        """Show the prompt for `mode` with `value` in it, focused now: what is typed right
        after the key that opened it belongs here."""
        self.mode = mode
        self.display = True
        self.show_error("")
        prompt = self.query_one(Input)
        prompt.placeholder = mode.value
        prompt.value = value
        self.screen.set_focus(prompt)

    def close(self) -> None:
        self.mode = None
        self.display = False

    def show_error(self, message: str) -> None:
        self.query_one("#prompt-error", Static).update(
            Text(message, style="bold red") if message else ""
        )

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self.show_error("")
        if self.mode is not None:
            self.post_message(self.Changed(self.mode, event.value))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.mode is not None:
            self.post_message(self.Submitted(self.mode, event.value))
