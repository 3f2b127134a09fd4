"""The header line: where the model came from, its class, and its totals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from modelbrowse.core.units import human_bytes, human_count, printable
from modelbrowse.widgets.guarded import Guarded

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex

GAP = "  "


def pack(items: list[Text], width: int) -> Text:
    """Join items with a gap, starting a new line where the next item would not fit whole."""
    out = Text()
    used = 0
    for item in items:
        if used and used + len(GAP) + item.cell_len > width:
            out.append("\n")
            used = 0
        elif used:
            out.append(GAP)
            used += len(GAP)
        out.append_text(item)
        used += item.cell_len
    return out


def share(part: int, whole: int) -> str:
    """`4.1%`, `0.27%`, `<0.01%`: enough digits to tell a LoRA's share from nothing."""
    percent = 100 * part / whole
    if part and percent < 0.01:
        return "<0.01%"
    return f"{percent:.1f}%" if percent >= 10 or not part else f"{percent:.2f}%"


class ModelHeader(Guarded, Static):
    """`modelbrowse  alexnet · AlexNet  61.1M params (61.1M trainable, 0 frozen)  233.1 MiB`."""

    def __init__(self, source_label: str, **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.source_label = source_label
        self._items: list[Text] = []
        self.show_loading("starting")

    def _show(self, items: list[Text]) -> None:
        self._items = items
        self._repack()

    def _repack(self) -> None:
        width = self.content_size.width or self.app.size.width
        self.update(pack(self._items, max(width, 20)))

    def on_resize(self) -> None:
        self._repack()

    def show_loading(self, what: str) -> None:
        self._show([self._title(), Text(f"{what}…", style="italic")])

    def _title(self, class_name: str = "") -> Text:
        text = Text()
        text.append("modelbrowse  ", style="bold")
        text.append(printable(self.source_label), style="bold cyan")
        if class_name:
            text.append(f" · {printable(class_name)}")
        return text

    def show_index(
        self,
        index: NodeIndex,
        state: str,
        unsaved: int = 0,
        shape: str = "",
        shape_failed: bool = False,
        warning: str = "",
    ) -> None:
        totals = index.totals()
        counts = Text(f"{human_count(totals.params)} params", style="green")
        counts.append(
            f" ({human_count(totals.trainable)} trainable, {human_count(totals.frozen)} frozen)",
            style="",
        )
        items = [self._title(index.root.type_name), counts]
        if totals.frozen and totals.trainable:  # the share that trains (LoRA: well under 1%)
            items.append(Text(f"{share(totals.trainable, totals.params)} trainable", style="green"))
        items.append(Text(human_bytes(totals.nbytes)))
        if unsaved:
            plural = "s" if unsaved != 1 else ""
            items.append(Text(f"{unsaved} unsaved edit{plural}", style="bold red"))
        if shape:
            items.append(Text(shape, style="bold red" if shape_failed else "cyan"))
        if state:
            items.append(Text(f"[{state}]", style="italic yellow"))
        if warning:  # its first clause: the root's details give the rest, whole
            items.append(Text(f"⚠ {printable(warning.partition('; ')[0])}", style="bold red"))
        self._show(items)
