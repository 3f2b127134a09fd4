"""The cast dialog: the dtype (↑ ↓ choose) and the list kept in float32, editable, with what
the cast would do as it stands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from modelbrowse.widgets.guarded import Guarded

# The dtypes offered, as shown and as torch names them.
CAST_CHOICES: list[tuple[str, str]] = [
    ("bf16", "bfloat16"),
    ("fp16", "float16"),
    ("fp32", "float32"),
]

CastPreview = Callable[[str, str], tuple[str, str | None]]
"""(dtype, keep text) -> what the cast would do, and why it cannot be applied (or None)."""


@dataclass(frozen=True)
class CastAnswer:
    dtype: str  # torch's name: bfloat16
    keep: str  # the keep list as typed


class CastDialog(Guarded, ModalScreen[CastAnswer | None]):
    """Choose the dtype with ↑ ↓ and edit the keep list; enter applies, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("up", "dtype(-1)", "Dtype", show=False),
        Binding("down", "dtype(1)", "Dtype", show=False),
    ]

    def __init__(self, target: str, keep: list[str], preview: CastPreview) -> None:
        super().__init__()
        self.target = target
        self.keep = keep
        self.preview = preview
        self.choice = 0

    @property
    def dtype(self) -> str:
        return CAST_CHOICES[self.choice][1]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(f"cast {self.target}", style="bold"))
            yield Static(self._choices_text(), id="cast-dtypes")
            yield Label("keep in float32 (paths, modules or globs such as *.bias; comma-separated)")
            yield Input(", ".join(self.keep), id="cast-keep", select_on_focus=False)
            yield Static("", id="cast-preview")
            yield Static(
                Text(
                    "kept tensors mix dtypes inside a layer: run the model under torch.autocast, "
                    "or clear the list for one dtype throughout",
                    style="dim",
                )
            )
            yield Static("", id="dialog-error")
            yield Static(
                Text("↑ ↓ dtype · enter applies · escape cancels", style="dim"), id="dialog-hint"
            )

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#cast-keep", Input))
        self._show_preview()

    def action_dtype(self, step: int) -> None:
        self.choice = (self.choice + step) % len(CAST_CHOICES)
        self.query_one("#cast-dtypes", Static).update(self._choices_text())
        self._show_preview()

    @on(Input.Changed)
    def _changed(self) -> None:
        self._show_preview()

    def _show_preview(self) -> None:
        text, problem = self.preview(self.dtype, self.query_one("#cast-keep", Input).value)
        self.query_one("#cast-preview", Static).update(Text(text))
        shown = Text(problem, style="bold red") if problem else ""
        self.query_one("#dialog-error", Static).update(shown)

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        _, problem = self.preview(self.dtype, event.value)
        if problem is None:
            self.dismiss(CastAnswer(self.dtype, event.value))

    def _choices_text(self) -> Text:
        text = Text()
        for number, (word, name) in enumerate(CAST_CHOICES):
            chosen = number == self.choice
            text.append("   " if number else "")
            text.append(f"{'●' if chosen else '○'} {word} ({name})", style="bold" if chosen else "")
        return text

    def action_cancel(self) -> None:
        self.dismiss(None)
