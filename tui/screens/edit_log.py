"""The edit log: every edit in words and as the PyTorch code that performs it."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from modelbrowse.widgets.guarded import Guarded


class EditLogScreen(Guarded, ModalScreen[None]):
    """Shows `(description, code lines)` pairs in order, then the whole snippet."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,L", "close", "Close")]

    def __init__(
        self, entries: list[tuple[str, list[str]]], snippet: str, copied: list[str] | None = None
    ) -> None:
        super().__init__()
        self.entries = entries
        self.snippet = snippet
        self.copied = copied or []

    def compose(self) -> ComposeResult:
        # Here, not at the top: Syntax brings Pygments (about 10 ms), which the first frame of
        # the app would otherwise wait for.
        from rich.syntax import Syntax

        with VerticalScroll(id="log-body"):
            yield Static(Text(f"Edit log: {len(self.entries)} edits", style="bold underline"))
            if not self.entries:
                yield Static(Text("no edits yet", style="italic"))
            parts = []
            for number, (description, code) in enumerate(self.entries, 1):
                parts.append(Text(f"{number}. {description}", style="bold"))
                parts.append(Text("\n".join(f"   {line}" for line in code), style="cyan"))
            yield Static(Group(*parts))
            if self.entries:
                yield Static(Text("\nAs one snippet, on a freshly built `model`:", style="bold"))
                yield Static(Syntax(self.snippet, "python", theme="ansi_dark", word_wrap=True))
            if self.copied:
                yield Static(Text("\nSelections copied with Y, for PEFT:", style="bold"))
                text = "\n".join(self.copied)
                yield Static(Syntax(text, "python", theme="ansi_dark", word_wrap=True))
            yield Static(Text("escape closes", style="italic dim"))

    def on_mount(self) -> None:
        self.query_one("#log-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
