"""What a probe shows: a tree line's output shape and NaN/Inf mark, and the detail pane's
block of output statistics, histogram and gradient."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.text import Text

from modelbrowse.core.units import printable
from modelbrowse.widgets.charts import Histogram
from modelbrowse.widgets.detail_pane import _fields, _number

if TYPE_CHECKING:
    from modelbrowse.core.probe import GradStats, OutputStats, ProbeResult

STALE_NOTE = "stale: the model changed since this run (p runs it again)"


def compact_shape(shape: tuple[int, ...]) -> str:
    """(1, 64, 55, 55) -> `1×64×55×55`; () -> `scalar`."""
    return "×".join(str(d) for d in shape) if shape else "scalar"


def bad_text(stats: OutputStats) -> str:
    """`NaN`, `Inf` or `NaN Inf` for an output that holds them, else ""."""
    return " ".join(word for word, n in (("NaN", stats.nan), ("Inf", stats.inf)) if n)


def tree_suffix(stats: OutputStats | None, stale: bool, no_grad: bool = False) -> Text | None:
    """What a probe adds to a tree line: ` →1×64×55×55`, a red `NaN`, a `no grad`; dim
    when stale. None when it adds nothing."""
    if stats is None and not no_grad:
        return None
    text = Text()
    if stats is not None:
        text.append(f" →{compact_shape(stats.shape)}", style="dim" if stale else "cyan")
        bad = bad_text(stats)
        if bad:
            text.append(f"  {bad}", style="dim red" if stale else "bold red")
    if no_grad:
        text.append("  no grad", style="dim" if stale else "bold yellow")
    return text


def _heading(result: ProbeResult, stale: bool) -> Text:
    mode = "train mode" if result.train else "eval mode"
    if result.backward:
        mode += ", backward"
    text = Text("probe", style="bold")
    text.append(f"  {mode}", style="dim")
    if stale:
        text.append(f"\n{STALE_NOTE}", style="bold yellow")
    return text


def output_rows(stats: OutputStats) -> list[tuple[str, RenderableType | str]]:
    """The output's statistics as label and value rows, with its histogram."""
    red = "bold red"
    rows: list[tuple[str, RenderableType | str]] = [
        ("output", f"{compact_shape(stats.shape)}  {stats.dtype}"),
        ("order", f"{stats.order + 1} in execution"),
        ("mean", _number(stats.mean)),
        ("std", _number(stats.std)),
        ("absmax", _number(stats.absmax)),
        ("zeros", f"{stats.zeros:.2%}"),
    ]
    if stats.dead is not None:
        rows.append(("dead units", f"{stats.dead:.2%}"))
    rows.append(("NaN", Text(f"{stats.nan:,}", style=red if stats.nan else "")))
    rows.append(("Inf", Text(f"{stats.inf:,}", style=red if stats.inf else "")))
    if stats.histogram and any(stats.histogram):
        rows.append(("histogram", Histogram(stats.histogram, stats.low, stats.high, stats.mean)))
        rows.append(("", Text(f"{_number(stats.low)} … {_number(stats.high)}", style="dim")))
    return rows


def grad_rows(
    result: ProbeResult, path: str, grad: GradStats | None
) -> list[tuple[str, RenderableType | str]]:
    """A parameter's gradient after a backward pass: norm and ratio, or that it got none."""
    if not result.backward:
        return [("gradient", Text("no backward pass (b in the probe dialog)", style="dim"))]
    if grad is not None:
        return [("grad norm", _number(grad.norm)), ("grad/weight", _number(grad.ratio))]
    if path in result.no_grad:
        return [("gradient", Text("no gradient: the loss does not reach it", style="bold red"))]
    return [("gradient", Text("none (not trainable)", style="dim"))]


def probe_renderable(
    result: ProbeResult, path: str, is_module: bool, stale: bool
) -> RenderableType | None:
    """The detail pane's probe block for `path`, or None when the run says nothing of it."""
    if is_module:
        stats = result.outputs.get(path)
        if stats is None:
            note = Text("did not run in the probe's forward pass", style="dim")
            return Group(Text(""), _heading(result, stale), _fields([("output", note)]))
        return Group(Text(""), _heading(result, stale), _fields(output_rows(stats)))
    rows = grad_rows(result, path, result.grads.get(path))
    return Group(Text(""), _heading(result, stale), _fields(rows))


def input_stats_text(inputs: tuple[OutputStats, ...]) -> str:
    """The first bad module's inputs in one line: `input 1×8 mean 0.1 absmax 3 NaN 0`."""
    parts = []
    for number, stats in enumerate(inputs, 1):
        name = "input" if len(inputs) == 1 else f"input {number}"
        words = f"{name} {compact_shape(stats.shape)} mean {_number(stats.mean)}"
        words += f" absmax {_number(stats.absmax)} NaN {stats.nan:,} Inf {stats.inf:,}"
        parts.append(words)
    return "; ".join(parts) if parts else "its inputs were not tensors"


def no_grad_text(path: str, owner: str) -> str:
    """`branch.weight (in branch: UnusedBranch.branch)` as the status line says it."""
    return f"{printable(path)} (module {printable(owner) or '(root)'})"
