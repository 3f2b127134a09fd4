"""The detail pane's charts: the histogram of a tensor's values, a module's parameters by child."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from modelbrowse.core.units import human_count, printable
from modelbrowse.widgets.wrapping import Wrapped

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.nodes import Node

SPARK = " ▁▂▃▄▅▆▇█"
# The chart of parameters by child: bars this wide at most, this many rows, for lists this long.
CHART_WIDTH = 20
CHART_ROWS = 16
CHART_MAX_CHILDREN = 200


def sparkline(counts: tuple[int, ...]) -> str:
    """Histogram counts as block characters, scaled to the largest bin."""
    top = max(counts) if counts else 0
    if top == 0:
        return ""
    return "".join(SPARK[math.ceil(c / top * (len(SPARK) - 1))] for c in counts)


class Histogram:
    """The value histogram as bars scaled to the pane's width, with the mean (μ) and zero (0)
    marked on a line below where they fall inside the range."""

    def __init__(self, counts: tuple[int, ...], low: float, high: float, mean: float) -> None:
        self.counts, self.low, self.high, self.mean = counts, low, high, mean

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        bins = len(self.counts)
        width = max(bins, min(options.max_width, 4 * bins))
        bars = sparkline(self.counts)
        yield Text("".join(bars[c * bins // width] for c in range(width)), style="green")
        marks = [" "] * width
        for value, mark in ((0.0, "0"), (self.mean, "μ")):
            column = self._column(value, width)
            if column is not None:
                marks[column] = mark
        yield Text("".join(marks).rstrip() or " ", style="bold yellow")

    def _column(self, value: float, width: int) -> int | None:
        span = self.high - self.low
        if not math.isfinite(value) or span <= 0 or not self.low <= value <= self.high:
            return None
        return min(width - 1, int((value - self.low) / span * width))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(len(self.counts), options.max_width)


def children_chart(index: NodeIndex, node: Node) -> ChildrenChart | None:
    """A bar per child module, scaled to the largest: where the parameters are. None for fewer
    than two children with parameters, or for lists too long to chart (the tree pages them)."""
    modules = [c for c in node.children if index.node(c).is_module]
    if not 2 <= len(modules) <= CHART_MAX_CHILDREN:
        return None
    counts = [(printable(index.node(c).name), index.totals(c).params) for c in modules]
    if sum(1 for _, n in counts if n) < 2:
        return None
    return ChildrenChart(counts[:CHART_ROWS], len(counts) - CHART_ROWS)


class ChildrenChart:
    """Name, bar and count per child; the bars give way first in a narrow pane, so that the
    counts are always whole."""

    def __init__(self, counts: list[tuple[str, int]], more: int) -> None:
        self.counts = counts
        self.more = more
        self.numbers = [human_count(n) for _, n in counts]
        self.name_width = min(max(len(name) for name, _ in counts), 24)
        self.count_width = max(len(number) for number in self.numbers)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        name_width = max(min(self.name_width, width // 3), 1)
        bar_width = max(min(CHART_WIDTH, width - name_width - self.count_width - 2), 1)
        top = max(n for _, n in self.counts)
        table = Table.grid(padding=(0, 1))
        table.add_column(width=name_width)
        table.add_column(no_wrap=True, width=bar_width)
        table.add_column(justify="right", no_wrap=True)
        for (name, count), number in zip(self.counts, self.numbers, strict=True):
            bar = "█" * max(1 if count else 0, round(count / top * bar_width))
            table.add_row(Wrapped(name), Text(bar, style="green"), number)
        if self.more > 0:
            table.add_row(Text(f"… {self.more} more", style="dim", no_wrap=True), "", "")
        yield table

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = self.name_width + CHART_WIDTH + self.count_width + 2
        return Measurement(self.count_width + 4, widest).clamp(max_width=options.max_width)
