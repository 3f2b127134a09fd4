"""The health check in the app: run in a worker, its findings listed; enter on one goes to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.widgets.guarded import Guarded

if TYPE_CHECKING:
    from modelbrowse.core.health import HealthReport

CLOSE_HINT = "enter goes to the finding · escape closes"


class HealthScreen(Guarded, ModalScreen[str | None]):
    """Runs `make_report` off the UI thread, then lists one line per finding; dismissed with
    the tree path of the finding chosen, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,C", "close", "Close")]

    def __init__(
        self, title: str, make_report: Callable[[Callable[[], bool]], HealthReport]
    ) -> None:
        super().__init__()
        self.title_text = title
        self.make_report = make_report  # told whether the screen was closed meanwhile
        self.paths: list[str] = []
        self.closed = False

    def compose(self) -> ComposeResult:
        with Vertical(id="health-body") as body:
            body.border_subtitle = CLOSE_HINT
            yield Static(Text(self.title_text, style="bold underline"))
            yield Static(Text("checking every tensor…", style="italic"), id="health-status")
            yield OptionList(id="health-findings")
            yield Static("", id="health-notes")

    def on_mount(self) -> None:
        self.query_one(OptionList).display = False
        self.run_check()

    @work(thread=True, exclusive=True)
    def run_check(self) -> None:
        from modelbrowse.core.health import CheckCancelled

        try:
            report = self.make_report(lambda: self.closed)
        except CheckCancelled:
            return  # closed: the rest of a big checkpoint is not read for nobody
        except ModelBrowseError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._show, report)

    def _failed(self, message: str) -> None:
        if self.is_attached:
            self.query_one("#health-status", Static).update(Text(message, style="bold red"))

    def _show(self, report: HealthReport) -> None:
        from modelbrowse.core.health_text import report_notes, summary_line

        if not self.is_attached:  # closed while the check ran
            return
        self.query_one("#health-status", Static).update(Text(summary_line(report)))
        self.paths = [finding.path for finding in report.findings]
        findings = self.query_one(OptionList)
        findings.add_options(
            Option(Text.assemble((f"{f.kind:<10} ", "bold"), f"{f.key}: {f.text}"))
            for f in report.findings
        )
        findings.display = bool(report.findings)
        if report.findings:
            findings.highlighted = 0
            findings.focus()
        notes = report_notes(report)
        if notes:
            self.query_one("#health-notes", Static).update(
                Text("\n".join(f"note: {note}" for note in notes), style="dim")
            )

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.closed = True
        self.dismiss(self.paths[event.option_index])

    def action_close(self) -> None:
        self.closed = True
        self.dismiss(None)
