"""The torchinfo summary, computed in a worker and shown over the tree."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import ScrollableContainer
from textual.screen import ModalScreen
from textual.widgets import Static

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.widgets.guarded import Guarded

# On the frame, never scrolled away: how to leave, and that the table scrolls sideways.
CLOSE_HINT = "escape closes · ↑ ↓ ← → scroll"


class SummaryScreen(Guarded, ModalScreen[None]):
    """Runs `make_summary` off the UI thread and shows its text, or its error inline."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,s", "close", "Close")]

    def __init__(self, title: str, make_summary: Callable[[], str]) -> None:
        super().__init__()
        self.title_text = title
        self.make_summary = make_summary

    def compose(self) -> ComposeResult:
        # Scrolls both ways: torchinfo's table is wider than a small terminal.
        with ScrollableContainer(id="summary-body") as body:
            body.border_subtitle = CLOSE_HINT
            yield Static(Text(self.title_text, style="bold underline"))
            yield Static(Text("running torchinfo…", style="italic"), id="summary-text")

    def on_mount(self) -> None:
        self.query_one("#summary-body").focus()  # arrows, page keys and end scroll the table
        self.run_summary()

    @work(thread=True, exclusive=True)
    def run_summary(self) -> None:
        try:
            text = Text(self.make_summary(), no_wrap=True, overflow="ignore")
        except ModelBrowseError as exc:
            text = Text(str(exc), style="bold red")
        self.app.call_from_thread(self._show, text)

    def _show(self, text: Text) -> None:
        if self.is_attached:  # the user may have closed the screen while torchinfo ran
            shown = self.query_one("#summary-text", Static)
            shown.set_class(not text.no_wrap, "failed")  # an error wraps: it is read whole
            shown.update(text)

    def action_close(self) -> None:
        self.dismiss(None)
