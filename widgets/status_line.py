"""The status line: the latest message, wrapped at separators over a few lines, and every
message kept, whole, for the edit log."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text
from textual.visual import VisualType
from textual.widgets import Static

from modelbrowse.widgets.wrapping import capped_lines, wrap_text

MAX_LINES = 2
POINTER = " … L shows it all"
HISTORY = 500


@dataclass(frozen=True)
class StatusMessage:
    """One message as it was shown."""

    text: str
    style: str
    when: float
    transient: bool = False  # one of a run typed key by key (a filter's count): only the last

    def clock(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.when))


class CappedText:
    """A message on at most `MAX_LINES` lines; a longer one ends in a pointer to the log."""

    def __init__(self, text: Text) -> None:
        self.text = text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines, _ = capped_lines(self.text, options.max_width, MAX_LINES, POINTER)
        yield Text("\n").join(lines)


def _progress_of(message: str) -> str:
    """`writing x.pt…` for `writing x.pt… 45%`: what a run of progress messages shares."""
    head, dots, _ = message.partition("…")
    return head + dots if dots else ""


class StatusLine(Static):
    """Shows one message; `say` keeps it in `history`, `update` too unless it only replaces
    the last of a run typed key by key (a filter's or a selection's count as one types)."""

    DEFAULT_CSS: ClassVar[str] = f"""
    StatusLine {{
        height: auto;
        max-height: {MAX_LINES};
    }}
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.history: deque[StatusMessage] = deque(maxlen=HISTORY)
        self.message = Text()

    def say(self, message: str, style: str = "") -> None:
        """Show `message` and keep it."""
        self._keep(message, style, transient=False)
        self._show(Text(message, style=style))

    def update(self, content: VisualType = "", *, layout: bool = True) -> None:
        text = content if isinstance(content, Text) else Text(str(content))
        self._keep(text.plain, str(text.style or ""), transient=True)
        self._show(text)

    def _show(self, text: Text) -> None:
        self.message = text
        super().update(CappedText(text) if text.plain else "")

    def _keep(self, message: str, style: str, transient: bool) -> None:
        if not message:
            return
        last = self.history[-1] if self.history else None
        if last is not None and last.text == message:
            return
        progress = _progress_of(message)
        if last is not None and (
            (transient and last.transient) or (progress and _progress_of(last.text) == progress)
        ):
            self.history.pop()  # only the last of a run typed key by key, or of a progress
        self.history.append(StatusMessage(message, style, time.time(), transient))

    @property
    def is_cut(self) -> bool:
        """Whether the message shown needs more lines than the status line has."""
        width = self.content_size.width
        return bool(width) and len(wrap_text(self.message, width)) > MAX_LINES
