"""`--print --probe`: a probe's result as plain text (no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from modelbrowse.core.probe.result import OutputStats, ProbeResult
from modelbrowse.core.units import printable

COLUMNS = (
    "module",
    "class",
    "#",
    "output shape",
    "mean",
    "std",
    "absmax",
    "zeros",
    "dead",
    "NaN/Inf",
)
NOT_RUN = "not run"
CONTAINER = "(a container: no forward)"


def number(value: float) -> str:
    """Four significant digits: `0.01234`, `1.235e+04`, `nan`."""
    return "nan" if math.isnan(value) else f"{value:.4g}"


def share(value: float | None) -> str:
    """`12.5%`, or empty for None."""
    return "" if value is None else f"{value * 100:.1f}%"


def shape_of(shape: tuple[int, ...]) -> str:
    """`1x64x55x55`; `scalar` for ()."""
    return "x".join(str(d) for d in shape) or "scalar"


def bad_counts(stats: OutputStats) -> str:
    """`12/0` (NaN/Inf) where there are any, else empty."""
    return f"{stats.nan}/{stats.inf}" if stats.bad else ""


def _depth(path: str) -> int:
    return 0 if not path else path.count(".") + 1


def _aligned(rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def output_rows(result: ProbeResult, depth: int | None = None) -> list[list[str]]:
    """One row per module in tree order (as `--print` lists them), indented by depth."""
    rows = [list(COLUMNS)]
    for path, kind in result.modules:
        if depth is not None and _depth(path) > depth:
            continue
        label = "  " * _depth(path) + (printable(path) if path else "(root)")
        stats = result.outputs.get(path)
        if stats is None:
            what = CONTAINER if path in result.containers else NOT_RUN
            rows.append([label, kind, "", what, "", "", "", "", "", ""])
            continue
        rows.append(
            [
                label,
                kind,
                str(stats.order),
                shape_of(stats.shape),
                number(stats.mean),
                number(stats.std),
                number(stats.absmax),
                share(stats.zeros),
                share(stats.dead),
                bad_counts(stats),
            ]
        )
    return rows


def describe_stats(stats: OutputStats) -> str:
    """One tensor's statistics on one line."""
    return (
        f"{shape_of(stats.shape)} {stats.dtype}, mean {number(stats.mean)}, std "
        f"{number(stats.std)}, absmax {number(stats.absmax)}, zeros {share(stats.zeros)}, "
        f"NaN {stats.nan}, Inf {stats.inf}"
    )


def bad_lines(result: ProbeResult) -> list[str]:
    """Where NaN/Inf first appeared and what went in there."""
    if result.first_bad is None:
        return ["no NaN or Inf in any module's output"]
    path = result.first_bad
    out = result.outputs[path]
    name = printable(path) if path else "(root)"
    lines = [
        f"first NaN/Inf: {name} ({result.class_of(path)}), output {shape_of(out.shape)}: "
        f"{out.nan} NaN, {out.inf} Inf"
    ]
    if not result.first_bad_inputs:
        lines.append("  its inputs: no tensors")
    for i, stats in enumerate(result.first_bad_inputs):
        lines.append(f"  input {i}: {describe_stats(stats)}")
    return lines


def grad_lines(result: ProbeResult) -> list[str]:
    """The loss, each parameter's gradient norm and ratio, the parameters without one."""
    lines = [f"loss ({result.loss_kind or 'backward'}): {number(result.loss or math.nan)}", ""]
    if result.grads:
        rows = [["parameter", "grad norm", "weight norm", "ratio"]]
        for name, grad in result.grads.items():
            rows.append(
                [printable(name), number(grad.norm), number(grad.weight_norm), number(grad.ratio)]
            )
        lines += _aligned(rows, {1, 2, 3})
        lines.append("")
    if not result.no_grad:
        lines.append("every trainable parameter got a gradient")
        return lines
    lines.append(f"no gradient: {len(result.no_grad)} trainable parameter(s)")
    width = max(len(printable(name)) for name in result.no_grad)
    for name in result.no_grad:
        module = result.module_of(name)
        where = printable(module) if module else "(root)"
        lines.append(f"  {printable(name):<{width}}  (module {where}: {result.class_of(module)})")
    return lines


def probe_table(result: ProbeResult, depth: int | None = None) -> str:
    """The probe as `--print --probe` prints it: a title, one row per module (output shape,
    mean, std, absmax, zeros, dead, NaN/Inf), the first NaN/Inf producer and its inputs, and
    after a backward pass the gradients and the parameters without one."""
    ran, total = len(result.outputs), len(result.modules)
    mode = "train mode" if result.train else "eval mode"
    passes = "forward and backward" if result.backward else "forward only"
    title = (
        f"probe: input {result.inputs}, {mode}, {passes}: {ran} of {total} modules gave a tensor"
    )
    lines = [title, ""]
    lines += _aligned(output_rows(result, depth), {2, 4, 5, 6, 7, 8, 9})
    lines.append("")
    lines += bad_lines(result)
    if result.backward:
        lines.append("")
        lines += grad_lines(result)
    return "\n".join(lines) + "\n"
