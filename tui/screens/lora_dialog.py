"""The LoRA dialog: rank, alpha, dropout, the target modules and the modules kept trainable,
with the exact modules that will get adapters and those LoRA cannot adapt, before applying."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from modelbrowse.widgets.guarded import Guarded


@dataclass(frozen=True)
class LoraAnswer:
    r: int
    lora_alpha: int
    lora_dropout: float
    targets: list[str]
    modules_to_save: list[str]


@dataclass(frozen=True)
class LoraPreview:
    """What the targets typed so far would do: the two lists, and why it cannot apply."""

    adapted: str
    unadaptable: str
    problem: str | None


Preview = Callable[[list[str], list[str]], LoraPreview]


def names(text: str) -> list[str]:
    """`q_proj, v_proj` -> ['q_proj', 'v_proj']: commas or spaces between names."""
    return [part for part in text.replace(",", " ").split() if part]


class LoraDialog(Guarded, ModalScreen[LoraAnswer | None]):
    """Enter applies (when the lists allow it), tab moves between fields, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, title: str, targets: list[str], saved: list[str], chosen_wrong: str, preview: Preview
    ) -> None:
        super().__init__()
        self.title_text = title
        self.targets = targets
        self.saved = saved
        self.chosen_wrong = chosen_wrong  # chosen modules LoRA cannot adapt
        self.preview = preview

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="lora"):
            yield Label(Text(self.title_text, style="bold"))
            with Horizontal(id="lora-numbers"):
                yield Label("r ")
                yield Input("8", id="r", type="integer")
                yield Label(" alpha ")
                yield Input("16", id="alpha", type="integer")
                yield Label(" dropout ")
                yield Input("0.05", id="dropout", type="number")
            yield Label("target_modules")
            yield Input(", ".join(self.targets), id="targets", select_on_focus=False)
            yield Label("modules_to_save (kept trainable, saved whole)")
            yield Input(
                ", ".join(self.saved), id="saved", placeholder="module paths, e.g. a replaced head"
            )
            # The lists can be long: they scroll, so that the error and the hint stay on a
            # small terminal's screen.
            with VerticalScroll(id="lora-lists", can_focus=False):
                yield Static("", id="lora-adapted")
                yield Static("", id="lora-wrong")
            yield Static("", id="dialog-error")
            yield Static(
                Text("enter applies · tab next field · escape cancels", style="dim"),
                id="dialog-hint",
            )

    def on_mount(self) -> None:
        self._show()
        self.set_focus(self.query_one("#targets", Input))

    def _lists(self) -> tuple[list[str], list[str]]:
        targets = names(self.query_one("#targets", Input).value)
        return targets, names(self.query_one("#saved", Input).value)

    def _show(self) -> LoraPreview:
        preview = self.preview(*self._lists())
        self.query_one("#lora-adapted", Static).update(Text(preview.adapted, style="green"))
        wrong = [w for w in (self.chosen_wrong, preview.unadaptable) if w]
        shown = Text(" · ".join(wrong), style="yellow") if wrong else ""
        self.query_one("#lora-wrong", Static).update(shown)
        return preview

    @on(Input.Changed)
    def _changed(self) -> None:
        self.query_one("#dialog-error", Static).update("")
        self._show()

    @on(Input.Submitted)
    def _submit(self) -> None:
        numbers = self._numbers()
        if isinstance(numbers, str):
            self._error(numbers)
            return
        problem = self._show().problem
        if problem is not None:
            self._error(problem)
            return
        targets, saved = self._lists()
        self.dismiss(LoraAnswer(*numbers, targets, saved))

    def _numbers(self) -> tuple[int, int, float] | str:
        from modelbrowse.core.edits.lora import settings_problem

        try:
            r = int(self.query_one("#r", Input).value)
            alpha = int(self.query_one("#alpha", Input).value)
            dropout = float(self.query_one("#dropout", Input).value)
        except ValueError:
            return "r and alpha are whole numbers, dropout a number from 0 up to 1"
        return settings_problem(r, alpha, dropout) or (r, alpha, dropout)

    def _error(self, message: str) -> None:
        self.query_one("#dialog-error", Static).update(Text(message, style="bold red"))

    def action_cancel(self) -> None:
        self.dismiss(None)
