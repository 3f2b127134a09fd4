"""`--print --detail PATH`: the detail pane of one module or tensor as text, statistics and
histogram included, for scripts, logs and terminals without the app."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from modelbrowse.core.sources.base import Source
    from modelbrowse.core.stats import TensorStats

WIDTH = 100  # at most: the detail pane's columns read badly wider than this


def detail_text(source: Source, path: str, seed: int | None, meta: bool) -> str:
    """The detail of `path` as text; values are built only when a tensor's statistics need
    them. Styled where standard output is a terminal, plain where it is not."""
    from rich.console import Console, Group
    from rich.text import Text

    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.stats import compute_stats, unavailable_reason
    from modelbrowse.widgets.detail_pane import (
        module_renderable,
        stats_renderable,
        tensor_renderable,
    )

    if seed is None:
        from modelbrowse.core.edits.base import new_seed

        seed = new_seed()
    model, is_meta = source.build_structure(seed)
    index = NodeIndex(model)
    node = index.find(path)
    parts: list[RenderableType] = []
    if node.is_module:
        parts.append(module_renderable(index, node))
    else:
        if is_meta and not meta:  # statistics need values: build them now
            index = NodeIndex(source.build_real(seed))
            node = index.node(node.path)
        parts.append(tensor_renderable(index, node))
        reason = unavailable_reason(node.obj)
        stats = None if reason else compute_stats(node.obj)
        note = reason or _values_note(source, seed, stats)
        parts += [Text(""), stats_renderable(stats, note)]
    width = min(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    console = Console(
        width=width, highlight=False, force_terminal=bool(sys.stdout and sys.stdout.isatty())
    )
    with console.capture() as captured:
        console.print(Group(*parts))
    return "\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n"


def _values_note(source: Source, seed: int | None, stats: TensorStats | None) -> str:
    """Where the values came from, for the statistics' heading. One value throughout is what
    the model's code set (`torch.ones`, a constant buffer), not a draw from the seed."""
    if not source.random_values:
        return "exact"
    module, colon, _ = source.spec.rpartition(":")
    where = Path(module).name if colon and module.endswith(".py") else "the model's code"
    if stats is not None and stats.min == stats.max:
        if stats.numel > 1:
            return f"exact: a constant, as {where} sets it (not random)"
        return f"exact: the value {where} gives it with --seed {seed}"  # random or not
    return f"exact, of a random initialisation (--seed {seed} repeats it)"
