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

from modelbrowse.core.nodes import NodeKind, StandIn, module_name, quantization_of
from modelbrowse.core.reading.quantized_layouts import scheme_text
from modelbrowse.core.units import (
    human_bytes,
    human_count,
    printable,
    printable_lines,
    shape_text,
)
from modelbrowse.widgets.charts import Histogram, children_chart
from modelbrowse.widgets.guarded import Guarded
from modelbrowse.widgets.module_tree import KIND_MARKERS
from modelbrowse.widgets.wrapping import Fitted, Wrapped

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.nodes import Node
    from modelbrowse.core.quantized_weights import QuantizedWeight
    from modelbrowse.core.reading.quantization import Quantization
    from modelbrowse.core.stats import TensorStats

# A checkpoint's rows: labels longer than this (GGUF's `llama.attention.head_count_kv`) fold.
SOURCE_KEY_WIDTH = 24


def dtype_text(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def tensor_dtype_text(tensor: Any) -> str:
    """The dtype, or for a quantized weight its scheme (`Q4_K`)."""
    quantization = quantization_of(tensor)
    return quantization.scheme if quantization is not None else dtype_text(tensor.dtype)


def quantization_text(quantization: Quantization) -> str:
    """`4.5 bits per weight, blocks of 256`."""
    text = f"{quantization.bits:g} bits per weight"
    if quantization.group_size:
        text += f", blocks of {quantization.group_size}"
    return text


def _number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.6g}"


def _fields(rows: list[tuple[str, RenderableType | str]], key_width: int | None = None) -> Table:
    """Label and value rows; labels wider than `key_width` (a file's metadata keys) fold."""
    table = Table.grid(padding=(0, 2))
    if key_width is None:
        table.add_column(style="bold", no_wrap=True, min_width=len("requires_grad"))
    else:
        table.add_column(
            style="bold", min_width=len("requires_grad"), max_width=key_width, overflow="fold"
        )
    table.add_column()
    for key, value in rows:
        # Plain strings would be parsed as Rich markup; text from a model is shown literally.
        # Text wraps at separators: a number or a dotted name is never split inside.
        if isinstance(value, str | Text):
            value = Wrapped(value)
        table.add_row(Text(key), value)
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


def tensor_renderable(index: NodeIndex, node: Node) -> RenderableType:
    if node.kind is NodeKind.QUANTIZED:
        return quantized_renderable(node)
    tensor = node.obj
    rows: list[tuple[str, RenderableType | str]] = [
        ("kind", node.kind.value),
        ("shape", shape_text(tuple(tensor.shape))),
        ("dtype", tensor_dtype_text(tensor)),
        ("device", str(tensor.device)),
        ("requires_grad", str(tensor.requires_grad)),
        ("numel", f"{tensor.numel():,}"),
        ("size", human_bytes(tensor.numel() * tensor.element_size())),
    ]
    quantization = quantization_of(tensor)
    if quantization is not None:
        dtype = f"{quantization.scheme} ({quantization.logical_dtype} when dequantized)"
        rows[2] = ("dtype", dtype)
        rows.insert(3, ("quantized", quantization_text(quantization)))
    aliases = [a for a in index.aliases(node.path) if a != node.path]
    if aliases:
        rows.append(("shared with", "\n".join(printable(a) for a in aliases)))
    parts: list[RenderableType] = [
        Wrapped(Text(printable(node.path, limit=400), style="bold underline")),
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
        Wrapped(title),
        _fields(rows),
        Text(""),
        Text("subtree totals", style="bold"),
        _fields(totals_rows),
    ]
    tensors = [index.node(c) for c in node.children if not index.node(c).is_module]
    if tensors:
        parts += [Text(""), Text("direct parameters and buffers", style="bold")]
        parts.append(tensors_table(tensors))
    chart = children_chart(index, node)
    if chart is not None:
        parts += [Text(""), Text("parameters by child", style="bold"), chart]
    return Group(*parts)


TENSOR_COLUMNS = ("name", "kind", "shape", "dtype", "requires_grad")


def tensors_table(tensors: list[Node]) -> Fitted:
    """A row per tensor where the pane is wide enough for every cell, else a block per tensor
    (its name, then the rest wrapped): no cell is ever shortened."""
    rows = []
    for child in tensors:
        tensor = child.obj
        rows.append(
            (
                printable(child.name),
                KIND_MARKERS[child.kind][1],
                shape_text(tuple(tensor.shape)),
                tensor_dtype_text(tensor),
                str(tensor.requires_grad),
            )
        )
    table = Table(title=None, box=None, header_style="bold", padding=(0, 1), pad_edge=False)
    for column in TENSOR_COLUMNS:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    blocks = Table.grid(padding=(0, 2))
    blocks.add_column(style="bold")
    blocks.add_column()
    for name, kind, shape, dtype, grad in rows:
        rest = f"{kind} · {shape} · {dtype} · requires_grad\u00a0{grad}"  # kept on one line
        blocks.add_row(Wrapped(name), Wrapped(rest))
    return Fitted(table, blocks)


def source_renderable(
    rows: list[tuple[str, str]], report: list[str], warnings: list[str], title: str = "checkpoint"
) -> RenderableType:
    """What a checkpoint holds besides its tensors, and how it fit the architecture."""
    parts: list[RenderableType] = [Text(""), Text(title, style="bold")]
    fields: list[tuple[str, RenderableType | str]] = [
        (printable(k), printable(v, limit=400)) for k, v in rows
    ]
    parts.append(_fields(fields, key_width=SOURCE_KEY_WIDTH))
    for warning in warnings:
        parts.append(Wrapped(Text(f"⚠ {printable(warning, 2000)}", style="bold yellow")))
    if report:
        parts += [Text(""), Text("load report", style="bold")]
        parts.append(Wrapped("\n".join(printable(line, limit=400) for line in report)))
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
        self._probe = Static("", id="detail-probe")
        self._probe.display = False  # shown once a probe has run
        yield self._body
        yield self._note
        yield self._stats
        yield self._probe

    def show_note(self, title: str, text: str, style: str = "") -> None:
        """A block between the details and the statistics (how a tensor differs, in --diff)."""
        shown = Text(printable_lines(text, limit=400), style=style)
        note = Group(Text(""), _fields([(title, shown)]))
        self._note.update(note)

    def show_message(self, message: str) -> None:
        self._body.update(Text(message, style="italic"))
        self._note.update("")
        self._stats.update("")
        self._probe.update("")

    def show_node(self, index: NodeIndex, path: str) -> None:
        node = index.node(path)
        body = module_renderable(index, node) if node.is_module else tensor_renderable(index, node)
        if not path and self.source_info is not None:
            body = Group(body, self.source_info)
        self._body.update(RenderOnce(body))
        self._note.update("")
        self._stats.update("")
        self._probe.update("")
        self.scroll_home(animate=False)

    def show_stats(self, stats: TensorStats | None, note: str = "") -> None:
        block = Group(Text(""), stats_renderable(stats, note))
        self._stats.update(RenderOnce(block))

    def show_probe(self, block: RenderableType | None) -> None:
        """The probe's block below the statistics (`widgets/probe_view.py`), or none."""
        self._probe.display = block is not None
        self._probe.update(RenderOnce(block) if block is not None else "")
