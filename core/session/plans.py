"""What an edit key would do where the cursor is, or over a selection, before any question:
which edit, on which paths, or why nothing (a sentence for the user)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.edits.modules import NewModule
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.selectors import Selection


@dataclass
class FreezePlan:
    """`f` at a path or over a selection: whether it unfreezes, the BatchNorm layers it
    reaches, and the edit once it is known whether their running statistics follow."""

    target: str  # what the question names: a path, or "3 modules matching conv*"
    trainable: bool  # True: it unfreezes
    norms: list[nn.Module]
    has_params: bool
    make: Callable[[bool], Edit]

    def settled(self) -> bool | None:
        """Whether running statistics follow, where that needs no question; None where the
        user is asked (freezing weights that BatchNorm layers sit among)."""
        from modelbrowse.core.norm_stats import stats_frozen

        if not self.has_params and self.norms and not self.trainable:
            return True  # no weights to freeze: only their statistics are left to
        if self.trainable or not self.norms:
            return any(stats_frozen(norm) for norm in self.norms)
        return None


def _unfreezing(params: int, trainable: int, norms: list[nn.Module]) -> bool:
    """Whether `f` unfreezes: nothing trainable left, or, where there are no parameters at all
    (BatchNorm without affine weights), every layer's statistics already kept."""
    from modelbrowse.core.norm_stats import stats_frozen

    if params:
        return trainable == 0
    return bool(norms) and all(stats_frozen(norm) for norm in norms)


def _set_trainable(index: NodeIndex, path: str, trainable: bool, norm_stats: bool) -> Edit:
    """The edit with what the index already knows: the subtree's parameters (walking 100,000
    modules takes a third of a second) and whether their flags are all alike (reading 120,000
    flags back takes tens of milliseconds)."""
    from modelbrowse.core.edits.freezing import SetTrainable

    params = index.parameters(path) if index.node(path).is_module else None
    alike = index.totals(path).trainable_alike
    return SetTrainable(path, trainable, norm_stats, parameters=params, all_were=alike)


def _norms_at(index: NodeIndex, paths: list[str]) -> dict[str, list[nn.Module]]:
    """The BatchNorm layers keeping running statistics under each path. Only subtrees that
    hold buffers are walked (such a layer has some), so a model of 100,000 modules without
    any costs nothing here."""
    from modelbrowse.core.norm_stats import tracking_batch_norms

    return {
        p: tracking_batch_norms(index.node(p).obj) if index.totals(p).buffers else [] for p in paths
    }


def plan_freeze(index: NodeIndex, path: str) -> FreezePlan | str:
    """`f` on one node, or why it does nothing."""
    totals = index.totals(path)
    node = index.node(path)
    norms = _norms_at(index, [path])[path] if node.is_module else []
    if node.is_module and totals.params == 0 and not norms:
        return f"{path or 'the model'} has no parameters"
    trainable = _unfreezing(totals.params, totals.trainable, norms)

    def make(norm_stats: bool) -> Edit:
        return _set_trainable(index, path, trainable, norm_stats)

    return FreezePlan(path or "the whole model", trainable, norms, bool(totals.params), make)


def plan_freeze_selection(index: NodeIndex, selection: Selection) -> FreezePlan | str:
    """`f` over a selection: one batch over every match that has parameters or statistics."""
    from modelbrowse.core.index_reading import outermost

    norms_at = _norms_at(index, outermost(selection.paths))
    having = [p for p, norms in norms_at.items() if index.totals(p).params or norms]
    norms = [norm for p in having for norm in norms_at[p]]
    params = sum(index.totals(p).params for p in having)
    trainable = _unfreezing(params, sum(index.totals(p).trainable for p in having), norms)
    what = "unfreeze" if trainable else "freeze"
    if not having:
        return f"nothing in the selection to {what}"

    def make(norm_stats: bool) -> Edit:
        from modelbrowse.core.edits.batch import Batch

        wording = f"{what} weights and running statistics of" if norm_stats else what
        edits = [_set_trainable(index, p, trainable, norm_stats) for p in having]
        return Batch(selection.pattern, edits, wording)

    target = f"{len(having)} modules matching {selection.pattern}"
    return FreezePlan(target, trainable, norms, bool(params), make)


@dataclass(frozen=True)
class Place:
    """Where `a` puts a new module: into a list (`container`) at `position`, or, where
    `container` is None, under `parent` by a name the user types."""

    words: str
    container: str | None
    position: int = 0
    parent: str = ""


def places(index: NodeIndex, path: str) -> list[Place]:
    """The places for a new module, from the module at `path`: the first is what enter picks."""
    from modelbrowse.core.edits.modules import is_positional

    node = index.node(path)
    found: list[Place] = []
    where = path or "the root"
    if node.parent is not None and is_positional(index.node(node.parent).obj):
        parent = node.parent or "the root"
        position = int(node.name)
        found.append(Place(f"after {path}, in {parent}", node.parent, position + 1))
        found.append(Place(f"before {path}, in {parent}", node.parent, position))
    if is_positional(node.obj):
        count = index.module_count(path)
        if count:
            found.append(Place(f"at the end of {where}", path, count))
            found.append(Place(f"at the start of {where}", path, 0))
        else:
            found.append(Place(f"into {where}, empty until now", path, 0))
    found.append(Place(f"inside {where}, as a child with a name", None, parent=path))
    return found


def resettable(index: NodeIndex, path: str) -> bool:
    """Whether a module in the subtree at `path` has its own reset_parameters() (True while
    the modules are only what a file describes: that is not known yet)."""
    from modelbrowse.core.nodes import StandIn

    for sub in index.subtree(path):
        obj = index.node(sub).obj
        if isinstance(obj, StandIn) or callable(getattr(obj, "reset_parameters", None)):
            return True
    return False


def replace_refusal(index: NodeIndex, path: str) -> str | None:
    """Why `e` cannot replace the node at `path`, or None."""
    if not index.node(path).is_module:
        return "replace acts on modules: move to one"
    if not path:
        return "the root cannot be replaced from the app"
    return None


def spec_problem(text: str) -> str | None:
    """Why a module spec cannot be built (checked on meta, as it is typed), or None."""
    from modelbrowse.core.edits.specs import build_module
    from modelbrowse.core.errors import ModelBrowseError

    try:
        build_module(text, device="meta")
    except ModelBrowseError as exc:
        return str(exc)
    return None


# A build's label on the status line is cut to this many characters.
_LABEL_CHARS = 48


@dataclass(eq=False)
class Build:
    """An edit's new modules being built in a worker before it is applied."""

    edit: Edit
    modules: list[NewModule]
    label: str  # what the status line calls it
    cancelled: threading.Event = field(default_factory=threading.Event)


def build_for(edit: Edit, model: nn.Module) -> Build | None:
    """The modules `edit` still has to build, or None when it builds none."""
    from modelbrowse.core.edits.modules import to_build
    from modelbrowse.core.edits.specs import spec_code

    modules = to_build(edit, model)
    if not modules:
        return None
    text = spec_code(modules[0].edit.spec)
    if len(text) > _LABEL_CHARS:
        text = text[: _LABEL_CHARS - 1] + "…"
    label = f"{len(modules)} × {text}" if len(modules) > 1 else text
    return Build(edit, modules, label)


def transplant_refusal(index: NodeIndex, path: str) -> str | None:
    """Why weights cannot be transplanted at `path` (a tensor, not a subtree), or None."""
    if not index.node(path).is_module:
        return "transplant into a module: move the cursor to one"
    return None
