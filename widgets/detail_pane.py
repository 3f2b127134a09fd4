"""The detail pane: everything about the node under the cursor."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from modelbrowse.core.nodes import NodeKind, StandIn, module_name
from modelbrowse.core.reading.quantized_layouts import scheme_text
from modelbrowse.core.units import (
    human_bytes,
    human_count,
    printable,
    printable_lines,
    shape_text,
)
from modelbrowse.widgets.guarded import Guarded
from modelbrowse.widgets.module_tree import KIND_MARKERS

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.nodes import Node
    from modelbrowse.core.quantized_weights import QuantizedWeight
    from modelbrowse.core.stats import TensorStats

SPARK = " ▁▂▃▄▅▆▇█"
# The chart of parameters by child: bars this wide at most, this many rows, for lists this long.
CHART_WIDTH = 20
CHART_ROWS = 16
CHART_MAX_CHILDREN = 200


def dtype_text(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def sparkline(counts: tuple[int, ...]) -> str:
    """Histogram counts as block characters, scaled to the largest bin."""
    top = max(counts) if counts else 0
    if top == 0:
        return ""
    return "".join(SPARK[math.ceil(c / top * (len(SPARK) - 1))] for c in counts)


def _number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.6g}"


def _fields(rows: list[tuple[str, RenderableType | str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, min_width=len("requires_grad"))
    table.add_column(overflow="fold")
    for key, value in rows:
        # Plain strings would be parsed as Rich markup; text from a model is shown literally.
        table.add_row(Text(key), Text(value) if isinstance(value, str) else value)
    return table


class RenderOnce:
    """A renderable drawn once per width. Textual renders a Static's content twice a frame (to
    measure its height, then to draw it), and the detail pane's tables are most of a keystroke's
    time: the second pass reuses the first's segments."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable
        self._key: tuple[Any, ...] | None = None
        self._segments: list[Segment] = []

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        key = (
            options.max_width,
            options.min_width,
            options.justify,
            options.overflow,
            options.no_wrap,
            options.ascii_only,
            options.highlight,
        )
        if key != self._key:
            self._segments = list(console.render(self.renderable, options))
            self._key = key
        yield from self._segments

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.renderable)


def stats_renderable(stats: TensorStats | None, note: str) -> RenderableType:
    """The statistics block: values, or a note (`computing…`, `meta tensor: no data`)."""
    if stats is None:
        return _fields([("statistics", Text(note, style="italic"))])
    heading = "statistics"
    source = "estimate from a sample, exact values coming…" if stats.estimated else "exact"
    rows: list[tuple[str, RenderableType | str]] = [
        (heading, Text(note or source, style="italic")),
        ("mean", _number(stats.mean)),
        ("std", _number(stats.std)),
        ("min", _number(stats.min)),
        ("max", _number(stats.max)),
        ("zeros", f"{stats.zero_fraction:.2%}"),
        ("NaN", Text(f"{stats.nan_count:,}", style="bold red" if stats.nan_count else "")),
        ("Inf", Text(f"{stats.inf_count:,}", style="bold red" if stats.inf_count else "")),
    ]
    if stats.histogram:
        low, high = stats.hist_range
        rows.append(("histogram", Histogram(stats.histogram, low, high, stats.mean)))
        rows.append(("", Text(f"{_number(low)} … {_number(high)}", style="dim")))
    return _fields(rows)


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


def tensor_renderable(index: NodeIndex, node: Node) -> RenderableType:
    if node.kind is NodeKind.QUANTIZED:
        return quantized_renderable(node)
    tensor = node.obj
    rows: list[tuple[str, RenderableType | str]] = [
        ("kind", node.kind.value),
        ("shape", shape_text(tuple(tensor.shape))),
        ("dtype", dtype_text(tensor.dtype)),
        ("device", str(tensor.device)),
        ("requires_grad", str(tensor.requires_grad)),
        ("numel", f"{tensor.numel():,}"),
        ("size", human_bytes(tensor.numel() * tensor.element_size())),
    ]
    aliases = [a for a in index.aliases(node.path) if a != node.path]
    if aliases:
        rows.append(("shared with", "\n".join(printable(a) for a in aliases)))
    parts: list[RenderableType] = [
        Text(printable(node.path, limit=400), style="bold underline"),
        _fields(rows),
    ]
    registered = [a for a in aliases if index.node(a).kind is not NodeKind.UNREGISTERED_TENSOR]
    if node.kind is NodeKind.UNREGISTERED_TENSOR and registered:
        parts.append(
            Text(
                f"⚠ a plain tensor attribute, the same tensor as {printable(registered[0])}: "
                ".to()/.cuda() move that one and leave this attribute on the old tensor.",
                style="yellow",
            )
        )
    elif node.kind is NodeKind.UNREGISTERED_TENSOR:
        parts.append(
            Text(
                "⚠ a plain tensor attribute, not registered with register_buffer: it is not in "
                "state_dict() and .to()/.cuda() do not move it.",
                style="yellow",
            )
        )
    elif node.kind is NodeKind.NONPERSISTENT_BUFFER:
        parts.append(Text("non-persistent: not saved in state_dict()", style="dim"))
    return Group(*parts)


def quantized_renderable(node: Node) -> RenderableType:
    """A quantized layer's logical weight: its true shape and count, the scheme, and the
    pieces it is stored as."""
    weight: QuantizedWeight = node.obj
    layout = weight.layout
    q = layout.quantization
    rows: list[tuple[str, RenderableType | str]] = [
        ("kind", node.kind.value),
        ("shape", shape_text(weight.shape)),
        ("parameters", f"{weight.count:,} ({human_count(weight.count)})"),
        ("scheme", scheme_text(layout)),
        ("bits", f"{q.bits:g} per weight, {weight.bits_per_weight:.2f} as stored"),
        ("grouping", layout.grouping or "-"),
        ("dtype", f"{dtype_text(weight.dtype)} once dequantized"),
        ("requires_grad", "False (quantized values are not trained)"),
        ("size", f"{human_bytes(weight.nbytes)} stored"),
    ]
    pieces = Table(title=None, box=None, header_style="bold", padding=(0, 1))
    for column in ("key", "dtype", "shape"):
        pieces.add_column(column, no_wrap=column != "key", overflow="fold")
    prefix = layout.key.rpartition(".")[0]
    for role, piece in weight.pieces.items():
        key = layout.pieces[role]
        pieces.add_row(
            Text(printable(key[len(prefix) + 1 :] if prefix else key, 60)),
            Text(dtype_text(piece.dtype)),
            Text(shape_text(tuple(piece.shape))),
        )
    return Group(
        Text(printable(node.path, limit=400), style="bold underline"),
        _fields(rows),
        Text(""),
        Text("stored as", style="bold"),
        pieces,
    )


def argument_lines(arguments: str, width: int = 28) -> str:
    """`extra_repr()` text with one top-level argument per line once it is longer than `width`."""
    if len(arguments) <= width:
        return arguments
    parts: list[str] = []
    depth = 0
    quote = ""
    start = 0
    for i, char in enumerate(arguments):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(arguments[start : i + 1].strip())
            start = i + 1
    parts.append(arguments[start:].strip())
    return "\n".join(part for part in parts if part)


def class_text(node: Node) -> Text:
    """The class name, with the module it is defined in below it."""
    cls = type(node.obj)
    text = Text(cls.__qualname__, style="bold")
    scripted = node.scripted_name
    if scripted is not None:
        return Text(scripted, style="bold") + Text("\nTorchScript (compiled)", style="dim")
    if node.from_keys:
        text.append("\nfrom the checkpoint's keys (no architecture)", style="dim")
    else:
        text.append(f"\n{module_name(cls)}", style="dim")
    return text


def _running_stats_text(module: Any) -> Text | None:
    """For a BatchNorm layer that keeps running statistics: whether training updates them."""
    if isinstance(module, StandIn):
        return None  # read from a file's keys: no layer, and torch may not be imported yet
    from modelbrowse.core.norm_stats import is_tracking_batch_norm, stats_frozen

    if not is_tracking_batch_norm(module):
        return None
    if stats_frozen(module):
        return Text("frozen: kept in eval mode, even after model.train()", style="cyan")
    return Text("updated in training")


def module_renderable(index: NodeIndex, node: Node) -> RenderableType:
    module = node.obj
    totals = index.totals(node.path)
    try:
        arguments = module.extra_repr()
    except Exception as exc:  # a user's extra_repr can raise; show why instead
        arguments = f"(extra_repr failed: {type(exc).__name__})"
    rows: list[tuple[str, RenderableType | str]] = [
        ("path", printable(node.path, limit=400) if node.path else "(root)"),
        ("class", class_text(node)),
    ]
    if arguments and node.scripted_name is None:  # a scripted one says original_name=
        rows.append(("arguments", argument_lines(printable(arguments, limit=400))))
    running_stats = _running_stats_text(module)
    if running_stats is not None:
        rows.append(("running stats", running_stats))
    aliases = [a for a in index.aliases(node.path) if a != node.path]
    if aliases:
        rows.append(("shared with", "\n".join(printable(a) for a in aliases)))
    child_modules = sum(1 for c in node.children if index.node(c).is_module)
    rows.append(("children", f"{child_modules} module{'' if child_modules == 1 else 's'}"))
    totals_rows: list[tuple[str, RenderableType | str]] = [
        ("parameters", f"{totals.params:,} ({human_count(totals.params)})"),
        ("trainable", f"{totals.trainable:,}"),
        ("frozen", f"{totals.frozen:,}"),
        ("buffers", f"{totals.buffers:,}"),
        ("size", human_bytes(totals.nbytes)),
    ]
    title = Text(
        printable(node.path, limit=400) or printable(node.type_name), style="bold underline"
    )
    parts: list[RenderableType] = [
        title,
        _fields(rows),
        Text(""),
        Text("subtree totals", style="bold"),
        _fields(totals_rows),
    ]
    tensors = [index.node(c) for c in node.children if not index.node(c).is_module]
    if tensors:
        table = Table(title=None, box=None, header_style="bold", padding=(0, 1))
        name_width = min(max(len(printable(c.name)) for c in tensors), 32)
        for column in ("name", "kind", "shape", "dtype", "requires_grad"):
            table.add_column(
                column, no_wrap=True, min_width=name_width if column == "name" else None
            )
        for child in tensors:
            tensor = child.obj
            cells = (
                printable(child.name),
                KIND_MARKERS[child.kind][1],
                shape_text(tuple(tensor.shape)),
                dtype_text(tensor.dtype),
                str(tensor.requires_grad),
            )
            table.add_row(*(Text(cell) for cell in cells))
        parts += [Text(""), Text("direct parameters and buffers", style="bold"), table]
    chart = children_chart(index, node)
    if chart is not None:
        parts += [Text(""), Text("parameters by child", style="bold"), chart]
    return Group(*parts)


def children_chart(index: NodeIndex, node: Node) -> Table | None:
    """A bar per child module, scaled to the largest: where the parameters are. None for fewer
    than two children with parameters, or for lists too long to chart (the tree pages them)."""
    modules = [c for c in node.children if index.node(c).is_module]
    if not 2 <= len(modules) <= CHART_MAX_CHILDREN:
        return None
    counts = [(index.node(c), index.totals(c).params) for c in modules]
    if sum(1 for _, n in counts if n) < 2:
        return None
    top = max(n for _, n in counts)
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, max_width=24)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    for child, count in counts[:CHART_ROWS]:
        bar = "█" * max(1 if count else 0, round(count / top * CHART_WIDTH))
        table.add_row(Text(printable(child.name, 24)), Text(bar, style="green"), human_count(count))
    if len(counts) > CHART_ROWS:
        table.add_row(Text(f"… {len(counts) - CHART_ROWS} more", style="dim"), "", "")
    return table


def source_renderable(
    rows: list[tuple[str, str]], report: list[str], warnings: list[str], title: str = "checkpoint"
) -> RenderableType:
    """What a checkpoint holds besides its tensors, and how it fit the architecture."""
    parts: list[RenderableType] = [Text(""), Text(title, style="bold")]
    parts.append(_fields([(printable(k), printable(v, limit=400)) for k, v in rows]))
    for warning in warnings:
        parts.append(Text(f"⚠ {printable(warning)}", style="bold yellow"))
    if report:
        parts += [Text(""), Text("load report", style="bold")]
        parts.append(Text("\n".join(printable(line, limit=400) for line in report)))
    return Group(*parts)


class DetailPane(Guarded, VerticalScroll):
    """Shows one node: a module's summary or a tensor's properties and statistics."""

    source_info: RenderableType | None = None

    def set_source_info(
        self,
        rows: list[tuple[str, str]],
        report: list[str],
        warnings: list[str],
        title: str = "checkpoint",
    ) -> None:
        """Shown below the root's details (a checkpoint's epoch, metadata, load report)."""
        self.source_info = source_renderable(rows, report, warnings, title) if rows else None

    def compose(self) -> ComposeResult:
        # Kept, not queried: each node shown (every key held through the tree) updates all
        # three, and a query walks the DOM each time.
        self._body = Static(Text("loading…", style="italic"), id="detail-body")
        self._note = Static("", id="detail-note")
        self._stats = Static("", id="detail-stats")
        yield self._body
        yield self._note
        yield self._stats

    def show_note(self, title: str, text: str, style: str = "") -> None:
        """A block between the details and the statistics (how a tensor differs, in --diff)."""
        shown = Text(printable_lines(text, limit=400), style=style)
        note = Group(Text(""), _fields([(title, shown)]))
        self._note.update(note)

    def show_message(self, message: str) -> None:
        self._body.update(Text(message, style="italic"))
        self._note.update("")
        self._stats.update("")

    def show_node(self, index: NodeIndex, path: str) -> None:
        node = index.node(path)
        body = module_renderable(index, node) if node.is_module else tensor_renderable(index, node)
        if not path and self.source_info is not None:
            body = Group(body, self.source_info)
        self._body.update(RenderOnce(body))
        self._note.update("")
        self._stats.update("")
        self.scroll_home(animate=False)

    def show_stats(self, stats: TensorStats | None, note: str = "") -> None:
        block = Group(Text(""), stats_renderable(stats, note))
        self._stats.update(RenderOnce(block))
