"""Reading a node index: paths, children, aliases, subtree totals and search.

Torch-free and shared by the two indexes: `core.index.NodeIndex` over a built model, and
`core.structure_index.StructureIndex` over a weight file's keys, shown before torch is imported.
A node's tensor is read only through `numel()`, `element_size()`, `requires_grad` and `is_meta`.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.nodes import (
    Node,
    NodeKind,
    Totals,
    ancestors,
    parent_path,
    path_candidates,
)


class IndexReading:
    """Path -> node, with aliases for shared objects and subtree totals: the read API."""

    _nodes: dict[str, Node]
    _paths_by_id: dict[int, list[str]]
    _totals: dict[str, Totals]
    _in_tree_order: bool

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, path: object) -> bool:
        return path in self._nodes

    @property
    def root(self) -> Node:
        return self._nodes[""]

    def node(self, path: str) -> Node:
        try:
            return self._nodes[path]
        except KeyError:
            raise ModelBrowseError(f"no such path: {path!r}") from None

    def find(self, text: str) -> Node:
        """The node for a path as a user typed it; a clear error when there is none."""
        candidates = path_candidates(text)
        for path in candidates:
            if path in self._nodes:
                return self._nodes[path]
        parent = candidates[-1]
        while parent and parent not in self._nodes:
            parent = parent_path(parent) or ""
        hint = ""
        if parent in self._nodes:
            names = [self._nodes[c].name for c in self._nodes[parent].children][:8]
            where = parent or "the root"
            hint = f"; {where} has: {', '.join(names)}" if names else ""
        raise ModelBrowseError(f"no such path: {text.strip()!r}{hint}")

    def children(self, path: str) -> list[Node]:
        return [self._nodes[c] for c in self._nodes[path].children]

    def child_modules(self, path: str, start: int = 0, stop: int | None = None) -> list[Node]:
        """A module's child modules, or those from `start` to `stop` among them (a page of a
        long list reads its own hundred nodes, not all 20,000)."""
        nodes, children = self._nodes, self._nodes[path].children
        first = self._first_module(children)
        end = len(children) if stop is None else min(first + stop, len(children))
        return [nodes[c] for c in children[first + start : end]]

    def child_tensors(self, path: str) -> list[Node]:
        """A module's own tensors."""
        nodes, children = self._nodes, self._nodes[path].children
        return [nodes[c] for c in children[: self._first_module(children)]]

    def module_count(self, path: str) -> int:
        """How many child modules a module has."""
        children = self._nodes[path].children
        return len(children) - self._first_module(children)

    def module_position(self, path: str) -> int:
        """Where a module is among its parent's child modules; -1 for the root or a tensor."""
        node = self._nodes[path]
        if node.kind is not NodeKind.MODULE or not path:
            return -1
        siblings = self._nodes[node.parent or ""].children
        return siblings.index(path) - self._first_module(siblings)

    def _first_module(self, children: list[str]) -> int:
        """Where a module's child modules start: its tensors come first, so the walk stops at
        the first module (a list of 20,000 blocks is not gone through)."""
        nodes, module = self._nodes, NodeKind.MODULE
        for position, child in enumerate(children):
            if nodes[child].kind is module:
                return position
        return len(children)

    def paths(self) -> Iterator[str]:
        """Every path, in tree order (a module, its tensors, then its child modules)."""
        if not self._in_tree_order:  # a refresh appended nodes at the end: reorder once
            self._nodes = {path: self._nodes[path] for path in self._ordered("")}
            self._in_tree_order = True
        return iter(self._nodes)

    def nodes(self) -> Iterator[Node]:
        """Every node, in tree order."""
        self.paths()
        return iter(self._nodes.values())

    def subtree(self, path: str) -> Iterator[str]:
        """`path` and every path below it, in tree order."""
        return self._ordered(path)

    def modules(self) -> Iterator[Node]:
        return (n for n in self._nodes.values() if n.is_module)

    def aliases(self, path: str) -> list[str]:
        """Every path of the object behind `path`, itself included, in tree order."""
        node = self.node(path)
        return list(self._paths_by_id.get(id(node.obj), [path]))

    def aliases_outside(self, path: str) -> list[str]:
        """Paths outside the subtree at `path` that reach an object inside it (shared or tied)."""

        def inside(other: str) -> bool:
            return not path or other == path or other.startswith(path + ".")

        if not path:
            return []  # nothing is outside the whole model
        found: list[str] = []
        for candidate in self._ordered(path):
            node = self._nodes[candidate]
            for alias in self._paths_by_id.get(id(node.obj), ()):
                if not inside(alias) and alias not in found:
                    found.append(alias)
        # "encoder" says it all; "encoder.weight" beside it would only repeat it.
        return [a for a in found if not any(p in found for p in ancestors(a))]

    def has_shared(self) -> bool:
        """Whether any object is reached by several paths."""
        return any(len(paths) > 1 for paths in self._paths_by_id.values())

    def is_shared(self, path: str) -> bool:
        return len(self.aliases(path)) > 1

    def totals(self, path: str = "") -> Totals:
        """Counts for the subtree at `path`; for a tensor, that tensor alone."""
        node = self.node(path)
        if node.is_module:
            return self._totals[path]
        return tensor_totals(node)

    @property
    def is_meta(self) -> bool:
        """True while any registered tensor is on the meta device (structure only, no data)."""
        return any(node.kind in COUNTED and node.obj.is_meta for node in self._nodes.values())

    def search(self, query: str) -> list[str]:
        """Paths whose path or class name contains `query`, case-insensitive, in tree order."""
        needle = query.strip().lower()
        if not needle:
            return []
        return [
            path
            for path in self.paths()
            if path and (needle in path.lower() or needle in self._nodes[path].type_name.lower())
        ]

    # --- counting -----------------------------------------------------------------------

    def _ordered(self, start: str) -> Iterator[str]:
        stack = [start]
        nodes = self._nodes
        while stack:
            path = stack.pop()
            yield path
            stack.extend(reversed(nodes[path].children))

    def _count_subtree(self, preorder: list[str]) -> None:
        """Totals of the modules among `preorder` (a subtree, parents before children)."""
        nodes, totals = self._nodes, self._totals
        for path in reversed(preorder):
            node = nodes[path]
            if node.kind is not NodeKind.MODULE:
                continue
            params = trainable = buffers = nbytes = count = 0
            for child_path in node.children:
                child = nodes[child_path]
                kind = child.kind
                if kind is NodeKind.MODULE:
                    sub = totals[child_path]
                    params += sub.params
                    trainable += sub.trainable
                    buffers += sub.buffers
                    nbytes += sub.nbytes
                    count += sub.tensors
                elif kind is NodeKind.QUANTIZED:  # counts its logical weights, not its words
                    params += child.obj.count
                    nbytes += child.obj.nbytes
                    count += 1
                elif kind is not NodeKind.UNREGISTERED_TENSOR:
                    tensor = child.obj
                    numel = tensor.numel()
                    nbytes += numel * tensor.element_size()
                    count += 1
                    if kind is NodeKind.PARAMETER:
                        params += numel
                        if tensor.requires_grad:
                            trainable += numel
                    else:
                        buffers += numel
            totals[path] = Totals(params, trainable, buffers, nbytes, count)

    def _compute_totals(self) -> None:
        self._totals = {}
        with collector_paused():
            self._count_subtree(list(self._ordered("")))
        self._compute_shared_totals()

    def _compute_shared_totals(self) -> None:
        """A tensor shared under several paths was counted once per path: count it once in
        every subtree holding several of them."""
        totals, nodes = self._totals, self._nodes
        for paths in self._paths_by_id.values():
            if len(paths) < 2:
                continue
            # A plain attribute that aliases a registered buffer was never counted: only the
            # registered paths are.
            counted = [p for p in paths if nodes[p].kind in COUNTED]
            if len(counted) < 2:
                continue
            occurrences: dict[str, int] = {}
            for path in counted:
                for ancestor in ancestors(path):
                    occurrences[ancestor] = occurrences.get(ancestor, 0) + 1
            once = tensor_totals(nodes[counted[0]])
            for ancestor, count in occurrences.items():
                if count > 1:
                    totals[ancestor] = totals[ancestor] - once.scaled(count - 1)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while adding many nodes.

    Every few hundred allocations it would walk every object of the model again: for 100,000
    modules that made building the index take twice as long.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


COUNTED = (
    NodeKind.PARAMETER,
    NodeKind.BUFFER,
    NodeKind.NONPERSISTENT_BUFFER,
    NodeKind.QUANTIZED,
)


def tensor_totals(node: Node) -> Totals:
    tensor: Any = node.obj
    numel = tensor.numel()
    if node.kind is NodeKind.QUANTIZED:  # frozen: quantized values are not trained
        return Totals(numel, 0, 0, tensor.nbytes, 1)
    nbytes = numel * tensor.element_size()
    if node.kind is NodeKind.PARAMETER:
        return Totals(numel, numel if tensor.requires_grad else 0, 0, nbytes, 1)
    if node.kind is NodeKind.UNREGISTERED_TENSOR:
        return Totals()
    return Totals(0, 0, numel, nbytes, 1)


def outermost(paths: Iterable[str]) -> list[str]:
    """The paths not inside another of them, in their order, without repeats."""
    unique = list(dict.fromkeys(paths))
    chosen = set(unique)
    return [p for p in unique if not any(a in chosen for a in ancestors(p))]
