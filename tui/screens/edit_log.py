"""The edit log: every edit in words and as the PyTorch code that performs it, and every
message the status line showed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from modelbrowse.widgets.guarded import Guarded
from modelbrowse.widgets.status_line import StatusMessage
from modelbrowse.widgets.wrapping import Wrapped


class EditLogScreen(Guarded, ModalScreen[None]):
    """Shows `(description, code lines)` pairs in order, then the whole snippet, the
    selections copied and every status message, whole."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,L", "close", "Close")]

    def __init__(
        self,
        entries: list[tuple[str, list[str]]],
        snippet: str,
        copied: list[str] | None = None,
        messages: Sequence[StatusMessage] = (),
        to_messages: bool = False,
    ) -> None:
        super().__init__()
        self.entries = entries
        self.snippet = snippet
        self.copied = copied or []
        self.messages = list(messages)
        self.to_messages = to_messages  # opened to read a message the status line cut

    def compose(self) -> ComposeResult:
        # Here, not at the top: Syntax brings Pygments (about 10 ms), which the first frame of
        # the app would otherwise wait for.
        from rich.syntax import Syntax

        with VerticalScroll(id="log-body") as body:
            body.border_subtitle = "escape closes · ↑ ↓ scroll"  # on the frame: never scrolled
            count = len(self.entries)
            title = f"Edit log: {count} edit{'' if count == 1 else 's'}"
            yield Static(Text(title, style="bold underline"))
            if not self.entries:
                yield Static(Text("no edits yet", style="italic"))
            parts: list[RenderableType] = []
            for number, (description, code) in enumerate(self.entries, 1):
                parts.append(Wrapped(Text(f"{number}. {description}", style="bold")))
                parts.append(Text("\n".join(f"   {line}" for line in code), style="cyan"))
            yield Static(Group(*parts))
            if self.entries:
                yield Static(Text("\nAs one snippet, on a freshly built `model`:", style="bold"))
                yield Static(Syntax(self.snippet, "python", theme="ansi_dark", word_wrap=True))
            if self.copied:
                yield Static(Text("\nSelections copied with Y, for PEFT:", style="bold"))
                text = "\n".join(self.copied)
                yield Static(Syntax(text, "python", theme="ansi_dark", word_wrap=True))
            if self.messages:
                heading = Text("\nMessages, the latest last:", style="bold")
                yield Static(heading, id="log-messages")
                yield Static(Group(*(message_text(m) for m in self.messages)))

    def on_mount(self) -> None:
        self.query_one("#log-body").focus()
        if self.to_messages and self.messages:
            self.call_after_refresh(self._show_messages)

    def _show_messages(self) -> None:
        self.query_one("#log-body").scroll_end(animate=False)

    def action_close(self) -> None:
        self.dismiss(None)


def message_text(message: StatusMessage) -> Wrapped:
    """`12:03:04  wrote x.pt (...)`, wrapped at separators."""
    text = Text(f"{message.clock()}  ", style="dim")
    text.append(message.text, style=message.style)
    return Wrapped(text)
