"""The module tree as plain text, for `--print`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelbrowse.core.nodes import NodeKind
from modelbrowse.core.units import human_bytes, human_count, printable

if TYPE_CHECKING:  # torch-free: the tree of a weight file is printed from its keys alone
    from modelbrowse.core.index_reading import IndexReading as NodeIndex
    from modelbrowse.core.nodes import Totals
    from modelbrowse.core.sources.base import Source


def render_source_info(source: Source) -> str:
    """What a checkpoint holds besides the tree (format, epoch, optimizer, metadata) and how it
    fits an architecture; empty for other sources."""
    fit = source.fit
    fit_lines = fit.lines() if fit is not None and (not fit.fits or fit.casts) else []
    return render_rows(source.info, source.warnings, fit_lines)


def render_rows(
    rows: list[tuple[str, str]], warnings: list[str] | None = None, more: list[str] | None = None
) -> str:
    """Label and value rows, aligned, then warnings and more lines; empty without rows."""
    if not rows:
        return ""
    width = max(len(printable(label)) for label, _ in rows)
    lines = [f"{printable(label):<{width}}  {printable(value)}" for label, value in rows]
    lines += [f"warning: {printable(warning)}" for warning in warnings or []]
    if more:
        lines += ["", *more]
    return "\n".join(lines) + "\n\n"


def render_tree_text(index: NodeIndex, depth: int | None = None) -> str:
    """One line per module (path, class, parameters), indented by depth, then the totals."""
    labels: list[str] = []
    names: list[str] = []
    params: list[str] = []
    notes: list[str] = []
    unregistered: list[str] = []
    module, plain = NodeKind.MODULE, NodeKind.UNREGISTERED_TENSOR
    shared = index.has_shared()
    classes: dict[str, str] = {}  # a class's printable name: a few classes, a million modules
    counts: dict[int, str] = {}
    for node in index.nodes():
        if node.kind is not module:
            if node.kind is plain:
                unregistered.append(node.path)
            continue
        if depth is not None and node.depth > depth:
            continue
        path = node.path
        labels.append("  " * node.depth + (printable(path) if path else "(root)"))
        if shared:
            aliases = [a for a in index.aliases(path) if a != path]
            notes.append(
                f"shared with {', '.join(printable(a) for a in aliases)}" if aliases else ""
            )
        total = index.totals(path).params
        count = counts.get(total)
        if count is None:
            count = counts[total] = human_count(total)
        params.append(count)
        type_name = node.type_name
        cls = classes.get(type_name)
        if cls is None:
            cls = classes[type_name] = printable(type_name)
        names.append(cls)
    return format_tree(labels, names, params, notes, index.totals(), unregistered)


def format_tree(
    labels: list[str],
    classes: list[str],
    params: list[str],
    notes: list[str],
    totals: Totals,
    unregistered: list[str],
) -> str:
    """Module lines (label, class, parameters and a note, if any notes), aligned, then the
    totals and warnings."""
    widths = [max(map(len, column)) for column in (labels, classes, params)]
    if any(notes):
        lines = [
            f"{label:<{widths[0]}}  {cls:<{widths[1]}}  {count:>{widths[2]}}  {note}".rstrip()
            for label, cls, count, note in zip(labels, classes, params, notes, strict=True)
        ]
    else:  # a million lines: one format call each, at C speed
        line = f"{{:<{widths[0]}}}  {{:<{widths[1]}}}  {{:>{widths[2]}}}".format
        lines = list(map(line, labels, classes, params))
    lines.append("")
    short = human_count(totals.params)
    exact = f"{totals.params:,}"
    lines.append(
        f"Total params: {exact}{f' ({short})' if short != exact else ''}  "
        f"trainable: {totals.trainable:,}  frozen: {totals.frozen:,}  "
        f"buffers: {totals.buffers:,}  size: {human_bytes(totals.nbytes)}"
    )
    for path in unregistered:
        lines.append(
            f"warning: {printable(path)} is a plain tensor attribute, not a registered buffer: "
            "it is not in state_dict() and .to() does not move it"
        )
    return "\n".join(lines) + "\n"


def render_selection(index: NodeIndex, pattern: str) -> str:
    """`--print --select`: each module the pattern matches, the count, the target_modules."""
    from modelbrowse.core.selectors import select

    selection = select(index, pattern)
    rows = [
        (
            printable(p) or "(root)",
            printable(index.node(p).type_name),
            human_count(index.totals(p).params),
        )
        for p in selection.paths
    ]
    lines = []
    if rows:
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
        lines.append("")
    lines.append(printable(selection.summary(), 400))
    names = ", ".join(repr(printable(n)) for n in selection.target_modules(index))
    lines.append(f"target_modules=[{names}]")
    return "\n".join(lines) + "\n"
