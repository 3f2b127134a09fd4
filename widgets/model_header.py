"""The header line: where the model came from, its class, and its totals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from modelbrowse.core.units import human_bytes, human_count, printable

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex


class ModelHeader(Static):
    """`modelbrowse  alexnet · AlexNet  61.1M params (61.1M trainable, 0 frozen)  233.1 MiB`."""

    def __init__(self, source_label: str, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.source_label = source_label
        self.show_loading("starting")

    def show_loading(self, what: str) -> None:
        text = Text()
        text.append("modelbrowse  ", style="bold")
        text.append(printable(self.source_label), style="bold cyan")
        text.append(f"  {what}…", style="italic")
        self.update(text)

    def show_index(
        self,
        index: NodeIndex,
        state: str,
        unsaved: int = 0,
        shape: str = "",
        shape_failed: bool = False,
    ) -> None:
        totals = index.totals()
        text = Text()
        text.append("modelbrowse  ", style="bold")
        text.append(printable(self.source_label), style="bold cyan")
        text.append(f" · {printable(index.root.type_name)}")
        text.append(f"  {human_count(totals.params)} params", style="green")
        text.append(
            f" ({human_count(totals.trainable)} trainable, {human_count(totals.frozen)} frozen)"
        )
        text.append(f"  {human_bytes(totals.nbytes)}")
        if unsaved:
            text.append(f"  {unsaved} unsaved edit{'s' if unsaved != 1 else ''}", style="bold red")
        if shape:
            text.append(f"  {shape}", style="bold red" if shape_failed else "cyan")
        if state:
            text.append(f"  [{state}]", style="italic yellow")
        self.update(text)
