"""The insert dialog: where the new module goes (after, before, at either end, or as a named
child), its constructor call, and its name where it needs one."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from modelbrowse.tui.screens.dialogs import SpecAnswer, SpecCheck, SpecDialog

HINT = "↑ ↓ where · enter applies · escape cancels"


class InsertDialog(SpecDialog):
    """A spec dialog with a choice of places, changed with up and down while typing (an input
    has no use for them); the name input shows only for the place that needs a name."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "place(-1)", "Where", show=False),
        Binding("down", "place(1)", "Where", show=False),
    ]

    def __init__(
        self,
        title: str,
        places: list[str],
        named: int | None,
        check: SpecCheck,
        name_check: SpecCheck,
    ) -> None:
        super().__init__(title, "", check, hint=HINT if len(places) > 1 else "")
        self.places = places
        self.named = named  # the place that adds a child by name, if any
        self.place = 0
        self.names = name_check
        self.name_check = name_check if named == 0 else None
        # SpecDialog's on_mount (Textual runs each class's) focuses the name input when asked
        self.ask_name = named == 0

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text, style="bold"))
            if len(self.places) > 1:
                yield Static(self._places_text(), id="places")
            yield Input(placeholder="name of the new child, e.g. extra_head or 100", id="name")
            yield Input(placeholder="a torch.nn constructor, e.g. nn.BatchNorm2d(256)", id="spec")
            yield Static("", id="dialog-error")
            yield Static(
                Text(self.hint or "enter applies · escape cancels", style="dim"), id="dialog-hint"
            )

    def on_mount(self) -> None:
        self._show_place()

    def action_place(self, step: int) -> None:
        if len(self.places) > 1:
            self.place = (self.place + step) % len(self.places)
            self._show_place()

    def _show_place(self) -> None:
        named = self.place == self.named
        self.name_check = self.names if named else None
        name = self.query_one("#name", Input)
        name.display = named
        if len(self.places) > 1:
            self.query_one("#places", Static).update(self._places_text())
        self.query_one("#dialog-error", Static).update("")
        spec = self.query_one("#spec", Input)
        self.set_focus(name if named and not name.value else spec)

    def _places_text(self) -> Text:
        text = Text()
        for number, place in enumerate(self.places):
            chosen = number == self.place
            text.append("\n" if number else "")
            text.append(f"{'●' if chosen else '○'} {place}", style="bold" if chosen else "")
        return text

    def _answer(self, spec: str, name: str) -> SpecAnswer:
        return SpecAnswer(spec.strip(), name, self.place)
