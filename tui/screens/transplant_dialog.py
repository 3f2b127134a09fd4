"""The transplant dialog: the prefix mapping, prefilled, and the report of what it copies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from modelbrowse.tui.screens.type_ahead import TypeAhead
from modelbrowse.widgets.guarded import Guarded


@dataclass(frozen=True)
class Preview:
    """What a mapping would do: the report's lines, and why it cannot apply (or None)."""

    lines: list[str]
    problem: str | None = None


Previewer = Callable[[str, str], Preview]
"""(source prefix, destination prefix) -> the report for that mapping."""


class TransplantDialog(TypeAhead, Guarded, ModalScreen[tuple[str, str] | None]):
    """Two inputs, the source prefix and the destination prefix, with the report below that
    follows them as they are edited; enter applies, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, source: str, target: str, preview: Previewer) -> None:
        super().__init__()
        self.title_text = title
        self.source = source
        self.target = target
        self.preview = preview
        self._problem: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="transplant-dialog"):
            yield Label(Text(self.title_text, style="bold"))
            with Horizontal(classes="transplant-mapping"):
                yield Label("source prefix ")
                yield Input(self.source, placeholder="'' for every key", id="source-prefix")
            with Horizontal(classes="transplant-mapping"):
                yield Label("into prefix   ")
                yield Input(self.target, placeholder="backbone.body.", id="target-prefix")
            yield Static("", id="transplant-report")
            yield Static("", id="dialog-error")
            yield Static(
                Text("enter copies · tab moves · escape cancels", style="dim"), id="dialog-hint"
            )

    def on_mount(self) -> None:
        self._show()
        self.set_focus(self.query_one("#source-prefix", Input))

    @on(Input.Changed)
    def _changed(self) -> None:
        self._show()

    def _prefixes(self) -> tuple[str, str]:
        return (
            self.query_one("#source-prefix", Input).value,
            self.query_one("#target-prefix", Input).value,
        )

    def _show(self) -> None:
        preview = self.preview(*self._prefixes())
        self._problem = preview.problem
        self.query_one("#transplant-report", Static).update(Text("\n".join(preview.lines)))
        error = Text(preview.problem, style="bold red") if preview.problem else ""
        self.query_one("#dialog-error", Static).update(error)

    @on(Input.Submitted)
    def _submit(self) -> None:
        if self._problem is None:
            self.dismiss(self._prefixes())

    def action_cancel(self) -> None:
        self.dismiss(None)
