"""The node index: every module, parameter and buffer of a model by qualified path.

Built in one walk over the model. Widgets read it; they never walk `named_modules()` themselves.
A module or tensor reachable under several paths appears under each, and knows its aliases;
subtree totals count every tensor once, as `sum(p.numel() for p in model.parameters())` does.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.nodes import (
    Node,
    NodeKind,
    Totals,
    ancestors,
    join_path,
    parent_path,
    path_candidates,
)


class NodeIndex:
    """Path -> node for a model, with aliases for shared objects and subtree totals."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._nodes: dict[str, Node] = {}
        self._paths_by_id: dict[int, list[str]] = {}
        self._totals: dict[str, Totals] = {}
        self._in_tree_order = True
        # Every parameter once by id, gathered by the walk and kept up to date by structure
        # changes (freezing the whole model reads it); None after a change that involves a
        # shared object, until it is asked for again.
        self._all_parameters: dict[int, nn.Parameter] | None = {}
        with _collector_paused():
            self._add_subtree(model, "", None, 0, ())
            self._compute_totals()

    # --- reading ---------------------------------------------------------------------------

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

    def is_shared(self, path: str) -> bool:
        return len(self.aliases(path)) > 1

    def totals(self, path: str = "") -> Totals:
        """Counts for the subtree at `path`; for a tensor, that tensor alone."""
        node = self.node(path)
        if node.is_module:
            return self._totals[path]
        return _tensor_totals(node)

    def parameters(self, path: str = "") -> list[nn.Parameter]:
        """The parameters at or under `path`, each once (as `parameters()`; those added by a
        structure change come last), read from the index: for 100,000 modules that is many
        times quicker than walking the model."""
        nodes = self._nodes
        kind = NodeKind.PARAMETER
        if not path and self._all_parameters is not None:
            return list(self._all_parameters.values())
        if not path:
            found: Iterable[Node] = nodes.values()
        elif self.totals(path).tensors < _SCAN_ABOVE:
            found = (nodes[p] for p in self._ordered(path))
        else:  # one pass over every node beats walking a big subtree node by node
            prefix = path + "."
            found = (n for p, n in nodes.items() if n.kind is kind and p.startswith(prefix))
        unique = {id(n.obj): n.obj for n in found if n.kind is kind}
        if not path:
            self._all_parameters = unique
        return list(unique.values())

    @property
    def is_meta(self) -> bool:
        """True while any registered tensor is on the meta device (structure only, no data)."""
        return any(node.kind in _COUNTED and node.obj.is_meta for node in self._nodes.values())

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

    # --- updating after an edit -----------------------------------------------------------

    def refresh_values(self, paths: Iterable[str]) -> None:
        """Tensors under `paths` changed in place (requires_grad): update the counts above them.

        Only the subtrees at `paths` and their ancestors are recounted; a tensor shared with
        another path makes the whole model recount, since its duplicates are subtracted there.
        """
        for path in outermost(paths):
            if path not in self._nodes:
                continue
            if not self._nodes[path].is_module:  # a tensor's old counts live in its module's
                path = self._nodes[path].parent or ""
            subtree = list(self._ordered(path))
            if self._touches_shared(subtree):
                self._compute_totals()
                return
            old = self.totals(path)
            self._count_subtree(subtree)
            self._propagate(path, self.totals(path) - old)

    def set_trainable(self, path: str, trainable: bool) -> None:
        """Every parameter under the module at `path` now has `requires_grad=trainable`.

        Each module below has all or none of its parameters trainable, so the counts follow
        without looking at a tensor: freezing a 100,000-module model takes milliseconds.
        """
        node = self.node(path)
        if not node.is_module or self.aliases_outside(path):
            self.refresh_values([path])  # one tensor, or parameters also counted elsewhere
            return
        top = self._totals[path]
        old = Totals(top.params, top.trainable, top.buffers, top.nbytes, top.tensors)
        prefix = path + "."
        for key, sub in self._totals.items():  # in place: no new object per module
            if not path or key == path or key.startswith(prefix):
                sub.trainable = sub.params if trainable else 0
        self._propagate(path, self._totals[path] - old)

    def refresh_structure(self, paths: Iterable[str]) -> None:
        """Modules or tensors at `paths` were replaced, added or removed: walk them again.

        The rest of the index is kept; counts change along the ancestors of each path.
        """
        shared = False
        for path in outermost(paths):
            if not path:
                self.__init__(self.model)  # type: ignore[misc]
                return
            parent = parent_path(path) or ""
            if parent not in self._nodes:
                continue  # inside something removed a moment ago
            with _collector_paused():
                shared = self._replace_subtree(path, parent) or shared
        if shared:  # aliases in tree order, and duplicates subtracted again: from scratch
            self._all_parameters = None
            self._paths_by_id = {}
            for path in self.paths():
                self._paths_by_id.setdefault(id(self._nodes[path].obj), []).append(path)
            self._compute_totals()

    def _replace_subtree(self, path: str, parent: str) -> bool:
        """Drop the nodes at `path`, add what the model has there now; True if that involves
        a shared object (the caller then recounts everything)."""
        old_paths = list(self._ordered(path)) if path in self._nodes else []
        shared = self._touches_shared(old_paths)
        old = self.totals(path) if old_paths else Totals()
        for old_path in old_paths:
            node = self._nodes.pop(old_path)
            self._totals.pop(old_path, None)
            holders = self._paths_by_id.get(id(node.obj), [])
            if old_path in holders:
                holders.remove(old_path)
            if not holders:
                self._paths_by_id.pop(id(node.obj), None)
                if self._all_parameters is not None and node.kind is NodeKind.PARAMETER:
                    self._all_parameters.pop(id(node.obj), None)
        parent_node = self._nodes[parent]
        parent_module: nn.Module = parent_node.obj
        name = path.rpartition(".")[2]
        seen = tuple(id(self._nodes[a].obj) for a in (parent, *ancestors(parent)))
        added: list[str] = []
        for tensor_name, tensor, kind in _direct_tensors(parent_module):
            if tensor_name == name:
                self._add(Node(path, name, kind, tensor, parent, parent_node.depth + 1), link=False)
                added.append(path)
        sub = parent_module._modules.get(name)
        if not added and sub is not None and id(sub) not in seen:
            added = self._add_subtree(sub, path, parent, parent_node.depth + 1, seen, link=False)
        parent_node.children = self._child_order(parent)
        self._in_tree_order = False
        shared = shared or self._touches_shared(added)
        if not shared:
            self._count_subtree(added)
            new = self.totals(path) if added else Totals()
            self._propagate(path, new - old)
        return shared

    def _child_order(self, path: str) -> list[str]:
        """A module's children as the walk orders them: its tensors, then its submodules."""
        module: nn.Module = self._nodes[path].obj
        names = [name for name, _, _ in _direct_tensors(module)]
        names += [name for name, sub in module._modules.items() if sub is not None]
        return [c for c in (join_path(path, n) for n in names) if c in self._nodes]

    def _touches_shared(self, paths: list[str]) -> bool:
        by_id = self._paths_by_id
        return any(len(by_id.get(id(self._nodes[p].obj), ())) > 1 for p in paths)

    def _propagate(self, path: str, delta: Totals) -> None:
        if delta == Totals():
            return
        for ancestor in ancestors(path):
            self._totals[ancestor] = self._totals[ancestor] + delta

    # --- building --------------------------------------------------------------------------

    def _add(self, node: Node, link: bool = True) -> None:
        self._nodes[node.path] = node
        holders = self._paths_by_id.setdefault(id(node.obj), [])
        holders.append(node.path)
        collected = self._all_parameters
        if collected is not None and node.kind is NodeKind.PARAMETER and len(holders) == 1:
            collected[id(node.obj)] = node.obj
        if link and node.parent is not None:
            self._nodes[node.parent].children.append(node.path)

    def _add_subtree(
        self,
        module: nn.Module,
        path: str,
        parent: str | None,
        depth: int,
        seen: tuple[int, ...],
        link: bool = True,
    ) -> list[str]:
        """Walk `module` depth first, adding nodes in tree order; returns the paths added.

        An explicit stack: a model 10,000 modules deep must not hit the recursion limit.
        `seen` holds the ids of the ancestors, so that a module containing itself stops there.
        """
        added: list[str] = []
        name = path.rpartition(".")[2] if path else type(module).__name__
        stack: list[tuple[nn.Module, str, str, str | None, int, tuple[int, ...]]] = [
            (module, path, name, parent, depth, (*seen, id(module)))
        ]
        while stack:
            module, path, name, parent, depth, seen = stack.pop()
            self._add(Node(path, name, NodeKind.MODULE, module, parent, depth), link)
            link = True
            added.append(path)
            for tensor_name, tensor, kind in _direct_tensors(module):
                child = join_path(path, tensor_name)
                self._add(Node(child, tensor_name, kind, tensor, path, depth + 1))
                added.append(child)
            pending = [
                (sub, join_path(path, sub_name), sub_name, path, depth + 1, (*seen, id(sub)))
                for sub_name, sub in module._modules.items()
                if sub is not None and id(sub) not in seen  # None placeholders; cycles
            ]
            stack.extend(reversed(pending))
        return added

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
        with _collector_paused():
            self._count_subtree(list(self._ordered("")))
        totals = self._totals
        # A shared tensor was added once per path; count it once in every subtree holding several.
        for paths in self._paths_by_id.values():
            if len(paths) < 2 or self._nodes[paths[0]].kind not in _COUNTED:
                continue
            occurrences: dict[str, int] = {}
            for path in paths:
                for ancestor in ancestors(path):
                    occurrences[ancestor] = occurrences.get(ancestor, 0) + 1
            once = _tensor_totals(self._nodes[paths[0]])
            for ancestor, count in occurrences.items():
                if count > 1:
                    totals[ancestor] = totals[ancestor] - once.scaled(count - 1)


@contextmanager
def _collector_paused() -> Iterator[None]:
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


def outermost(paths: Iterable[str]) -> list[str]:
    """The paths not inside another of them, in their order, without repeats."""
    unique = list(dict.fromkeys(paths))
    chosen = set(unique)
    return [p for p in unique if not any(a in chosen for a in ancestors(p))]


# Above this many tensors in a subtree, `parameters()` scans every node instead of walking it.
_SCAN_ABOVE = 10_000

_COUNTED = (NodeKind.PARAMETER, NodeKind.BUFFER, NodeKind.NONPERSISTENT_BUFFER)


def _tensor_totals(node: Node) -> Totals:
    tensor: torch.Tensor = node.obj
    numel = tensor.numel()
    nbytes = numel * tensor.element_size()
    if node.kind is NodeKind.PARAMETER:
        return Totals(numel, numel if tensor.requires_grad else 0, 0, nbytes, 1)
    if node.kind is NodeKind.UNREGISTERED_TENSOR:
        return Totals()
    return Totals(0, 0, numel, nbytes, 1)


def _direct_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor, NodeKind]]:
    """A module's own parameters, buffers, and tensors set as plain attributes."""
    for name, param in module._parameters.items():
        if param is not None:
            yield name, param, NodeKind.PARAMETER
    non_persistent = module._non_persistent_buffers_set
    for name, buffer in module._buffers.items():
        if buffer is not None:
            kind = NodeKind.NONPERSISTENT_BUFFER if name in non_persistent else NodeKind.BUFFER
            yield name, buffer, kind
    tensor_type = torch.Tensor
    unregistered = [(k, v) for k, v in vars(module).items() if isinstance(v, tensor_type)]
    for name, value in unregistered:
        yield name, value, NodeKind.UNREGISTERED_TENSOR
