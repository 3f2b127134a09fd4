"""Opening a model for a session: what it is opened from, the states of the load, and the
worker's part of each step (which returns what it read; the session takes it on the UI thread)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from modelbrowse.core.diff import DiffView
    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.sources.base import Source
    from modelbrowse.core.structure_index import StructureIndex


class Request(Protocol):
    """What a session is opened from: the command line's choices (`tui.options.AppOptions`)."""

    source: str
    seed: int | None
    meta: bool
    input_shape: str | None
    input_dtype: str | None
    recipe: str | None
    diff: str | None

    def resolve(self, spec: str | None = None) -> Source: ...

    def read_structure(self) -> StructureIndex | None: ...


class LoadState(enum.Enum):
    """Where the load is; only `READY` has real tensors, the only ones edits act on."""

    READING = "reading"  # nothing shown yet: torch loading, the source resolving
    PREVIEW = "preview"  # a weight file's keys read before torch; the full open follows
    COMPARISON = "comparison"  # `A --diff B`: read-only
    META = "meta"  # `--meta`: shapes only, never values
    STRUCTURE = "structure"  # built on meta, too big to fill at once: values when needed
    INITIALISING = "initialising"  # real tensors being made in a worker
    READY = "ready"  # real tensors: edits apply
    FAILED = "failed"


STATE_LABELS = {
    LoadState.READING: "loading",
    LoadState.PREVIEW: "loading torch: values follow",
    LoadState.COMPARISON: "comparison: read-only",
    LoadState.META: "meta: shapes only, no values",
    LoadState.INITIALISING: "initialising weights",
    LoadState.FAILED: "",
}
"""What the header says in each state (READY and STRUCTURE say more: see `Session`)."""

# Random initialisation above this many parameters waits until real values are needed.
EAGER_MATERIALISE_LIMIT = 100_000_000


@dataclass
class Opened:
    """What the load worker read: the source, its model's index and the seed it was built with;
    the recipe's edits to apply once tensors are real; both sides of a comparison."""

    source: Source
    index: NodeIndex
    is_meta: bool
    seed: int
    recipe_edits: list[Edit] = field(default_factory=list)
    view: DiffView | None = None


def open_model(request: Request, seed: int | None, loading: Callable[[str], None]) -> Opened:
    """Resolve the source and build its model (on meta where it can); in a worker. Raises
    `ModelBrowseError` with a line for the user. `loading` is told what takes long."""
    from modelbrowse.core.edits.base import new_seed
    from modelbrowse.core.index import NodeIndex

    source = request.resolve()
    seed = new_seed() if seed is None else seed
    if request.diff is not None:
        from modelbrowse.core.diff import diff_view

        other = request.resolve(request.diff)
        loading("comparing every tensor")
        view = diff_view(source, other, 0 if request.seed is None else request.seed)
        return Opened(source, NodeIndex(view.model), False, seed, view=view)
    edits, seed = _recipe_edits(request, source, seed)
    model, is_meta = source.build_structure(seed)
    return Opened(source, NodeIndex(model), is_meta, seed, edits)


def _recipe_edits(request: Request, source: Source, seed: int) -> tuple[list[Edit], int]:
    """`--recipe`: its edits, checked to be this model's, and the seed they were made on."""
    if request.recipe is None:
        return [], seed
    from modelbrowse.core.recipe import check_same_source, edits_of, read_recipe
    from modelbrowse.core.recovery import as_made

    recipe = read_recipe(request.recipe)
    check_same_source(recipe, source)
    edits = as_made(recipe, edits_of(recipe))
    kept = recipe["source"].get("init_seed")
    if request.seed is None and isinstance(kept, int):
        seed = kept  # the same random weights the edits were made on
    return edits, seed


def read_preview(request: Request) -> StructureIndex | None:
    """A weight file's tree from its bytes alone, before torch is imported; None when only the
    full open can show it."""
    try:
        return request.read_structure()
    except Exception:  # the preview is a head start, never a failure: the full open decides
        return None
