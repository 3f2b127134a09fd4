"""Dialogs for edits: a spec to build, a scheme to re-initialise with, a yes/no question
(the write dialog is in path_dialog.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.input import Selection
from textual.widgets.option_list import Option

from modelbrowse.tui.screens.type_ahead import TypeAhead
from modelbrowse.widgets.guarded import Guarded

SpecCheck = Callable[[str], str | None]
"""Returns an error message for a spec that would not build, or None."""


@dataclass(frozen=True)
class SpecAnswer:
    spec: str
    name: str = ""
    place: int = 0  # which of an insert dialog's places


class SpecDialog(TypeAhead, Guarded, ModalScreen[SpecAnswer | None]):
    """One input for a module spec (and one for a name, when adding a named child)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        value: str,
        check: SpecCheck,
        name_check: SpecCheck | None = None,
        hint: str = "",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.check = check
        self.name_check = name_check
        self.ask_name = name_check is not None
        self.hint = hint
        self._cancelled = threading.Event()
        self._checking = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text, style="bold"))
            if self.ask_name:
                yield Input(placeholder="name of the new child, e.g. extra_head", id="name")
            yield Input(
                self.value,
                placeholder="a torch.nn constructor, e.g. nn.Linear(4096, 10)",
                id="spec",
                select_on_focus=False,  # selected on mount: keys typed ahead are not replaced
            )
            yield Static("", id="dialog-error")
            yield Static(
                Text(self.hint or "enter applies · escape cancels", style="dim"), id="dialog-hint"
            )

    def on_mount(self) -> None:
        spec = self.query_one("#spec", Input)
        spec.selection = Selection(0, len(spec.value))  # typing replaces the constructor
        self.set_focus(self.query_one("#name", Input) if self.ask_name else spec)

    @on(Input.Changed)
    def _clear_error(self) -> None:
        self.query_one("#dialog-error", Static).update("")

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        name = ""
        if self.name_check is not None:
            name = self.query_one("#name", Input).value.strip()
            problem = self.name_check(name) if name else "type a name for the new child"
            if problem is not None:
                self._error(problem)
                self.set_focus(self.query_one("#name", Input))
                return
        if event.input.id == "name":
            self.set_focus(self.query_one("#spec", Input))
            return
        if self._checking:
            return
        self._checking = True
        self._show_hint("checking the spec… · escape cancels")
        self._check_off_thread(self.query_one("#spec", Input).value, name)

    @work(thread=True, exclusive=True, group="spec-check", exit_on_error=False)
    def _check_off_thread(self, spec: str, name: str) -> None:
        """A spec is built (on meta) to check it: off the UI thread, stopped by escape."""
        from modelbrowse.core.sources.build_budget import cancellable  # torch: never at import

        try:
            with cancellable(self._cancelled.is_set):
                problem = self.check(spec)
        except Exception as exc:  # the check reports problems; anything else still is one
            problem = f"unexpected error: {exc!r}"
        if not self._cancelled.is_set():
            self.app.call_from_thread(self._checked, spec, name, problem)

    def _checked(self, spec: str, name: str, problem: str | None) -> None:
        self._checking = False
        if self._cancelled.is_set():
            return
        self._show_hint(self.hint or "enter applies · escape cancels")
        if problem is not None:
            self._error(problem)
            return
        self.dismiss(self._answer(spec, name))

    def _answer(self, spec: str, name: str) -> SpecAnswer:
        return SpecAnswer(spec.strip(), name)

    def _show_hint(self, text: str) -> None:
        self.query_one("#dialog-hint", Static).update(Text(text, style="dim"))

    def _error(self, message: str) -> None:
        self.query_one("#dialog-error", Static).update(Text(message, style="bold red"))

    def action_cancel(self) -> None:
        self._cancelled.set()  # a build in the background stops at its next module
        self.dismiss(None)


@dataclass(frozen=True)
class ReinitAnswer:
    scheme: str
    seed: int


class ReinitDialog(Guarded, ModalScreen[ReinitAnswer | None]):
    """Choose a scheme (the module's own reset_parameters() first) and see or set the seed.

    The list is the same for every target, so a scheme keeps its place: one that does not
    apply is shown greyed, with why, and cannot be chosen."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, target: str, schemes: list[str], seed: int, unavailable: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.target = target
        self.schemes = schemes
        self.seed = seed
        self.unavailable = unavailable or {}

    def compose(self) -> ComposeResult:
        options = [
            Option(f"{name}  ({self.unavailable[name]})", disabled=True)
            if name in self.unavailable
            else Option(name)
            for name in self.schemes
        ]
        with Vertical(classes="dialog"):
            yield Label(Text(f"re-initialise {self.target}", style="bold"))
            yield OptionList(*options, id="schemes")
            yield Label("seed")
            yield Input(str(self.seed), id="seed", type="integer")
            yield Static("", id="dialog-error")
            yield Static(
                Text("enter applies · tab to the seed · escape cancels", style="dim"),
                id="dialog-hint",
            )

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = next(
            (i for i, name in enumerate(self.schemes) if name not in self.unavailable), 0
        )
        self.set_focus(options)

    @on(OptionList.OptionSelected)
    def _chosen(self) -> None:
        self._finish()

    @on(Input.Submitted, "#seed")
    def _seed_entered(self) -> None:
        self._finish()

    def _finish(self) -> None:
        options = self.query_one(OptionList)
        text = self.query_one("#seed", Input).value.strip()
        try:
            seed = int(text)
        except ValueError:
            seed = -1
        if not 0 <= seed < 2**63:
            message = Text("the seed is a whole number, 0 or more", style="bold red")
            self.query_one("#dialog-error", Static).update(message)
            return
        index = options.highlighted if options.highlighted is not None else 0
        self.dismiss(ReinitAnswer(self.schemes[index], seed))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ChoiceDialog(Guarded, ModalScreen[int | None]):
    """One question, a few answers: enter (or the answer's number) picks, escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("1", "choose(0)", show=False),
        Binding("2", "choose(1)", show=False),
        Binding("3", "choose(2)", show=False),
    ]

    def __init__(self, question: str, answers: list[str]) -> None:
        super().__init__()
        self.question = question
        self.answers = answers

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question, style="bold"), classes="question")
            yield OptionList(
                *(f"{number}  {answer}" for number, answer in enumerate(self.answers, 1)),
                id="answers",
            )
            yield Static(Text("enter chooses · escape cancels", style="dim"), id="dialog-hint")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = 0
        self.set_focus(options)

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option_index)

    def action_choose(self, number: int) -> None:
        if number < len(self.answers):
            self.dismiss(number)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(Guarded, ModalScreen[bool]):
    """A yes/no question: y says yes (enter too, unless `y_only`), n or escape says no."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("enter", "enter", "Yes", show=False),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, *, y_only: bool = False) -> None:
        super().__init__()
        self.question = question
        self.y_only = y_only

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.question, style="bold"), classes="question")
            yield Static(Text("y yes · n no", style="dim"), id="dialog-hint")

    def action_enter(self) -> None:
        if self.y_only:
            hint = Text("press y to confirm, n to go back", style="bold yellow")
            self.query_one("#dialog-hint", Static).update(hint)
            return
        self.dismiss(True)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
