"""The probe dialog: what the model is fed, train mode and a backward pass; enter runs it."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from modelbrowse.core.session.probing import ProbeSettings
from modelbrowse.widgets.guarded import Guarded
from modelbrowse.widgets.wrapping import Wrapped


class ProbeDialog(Guarded, ModalScreen[ProbeSettings | None]):
    """`t` toggles train mode, `b` the backward pass; enter runs, escape cancels."""

    DEFAULT_CSS: ClassVar[str] = """
    ProbeDialog {
        align: center middle;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "run", "Run"),
        Binding("t", "flip('train')", "Train mode"),
        Binding("b", "flip('backward')", "Backward"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, input_text: str, settings: ProbeSettings, loss: str = "") -> None:
        super().__init__()
        self.input_text = input_text
        self.loss = loss or "the output's sum"
        self.train = settings.train
        self.backward = settings.backward

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text("probe: run the model once and keep statistics", style="bold"))
            yield Static(Wrapped(Text(f"input: {self.input_text}")), id="probe-input")
            yield Static(self._choices(), id="probe-choices")
            hint = "enter runs · t train mode · b backward · escape cancels"
            yield Static(Text(hint, style="dim"), id="dialog-hint")

    def _choices(self) -> Text:
        def box(on: bool) -> str:
            return "[x]" if on else "[ ]"

        text = Text()
        text.append(f"{box(self.train)} train mode (t)", style="bold" if self.train else "")
        text.append("   eval mode when off\n", style="dim")
        text.append(
            f"{box(self.backward)} backward pass (b)", style="bold" if self.backward else ""
        )
        text.append(f"   loss: {self.loss}", style="dim")
        return text

    def action_flip(self, which: str) -> None:
        if which == "train":
            self.train = not self.train
        else:
            self.backward = not self.backward
        self.query_one("#probe-choices", Static).update(self._choices())

    def action_run(self) -> None:
        self.dismiss(ProbeSettings(train=self.train, backward=self.backward))

    def action_cancel(self) -> None:
        self.dismiss(None)
