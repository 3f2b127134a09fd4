"""The node index: every module, parameter and buffer of a model by qualified path.

Built in one walk over the model. Widgets read it; they never walk `named_modules()` themselves.
A module or tensor reachable under several paths appears under each, and knows its aliases;
subtree totals count every tensor once, as `sum(p.numel() for p in model.parameters())` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from modelbrowse.core.index_reading import (
    IndexReading,
    collector_paused,
    outermost,
)
from modelbrowse.core.nodes import Node, NodeKind, Totals, ancestors, join_path, parent_path


class NodeIndex(IndexReading):
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
        self._has_quantized = False
        with collector_paused():
            self._add_subtree(model, "", None, 0, ())
            self._compute_totals()

    # --- reading ---------------------------------------------------------------------------

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
        if not node.is_module or self.aliases_outside(path) or self._has_quantized:
            # One tensor, parameters also counted elsewhere, or quantized weights (which stay
            # frozen whatever is trained): counted again rather than set.
            self.refresh_values([path])
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
            with collector_paused():
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
        if node.kind is NodeKind.QUANTIZED:
            self._has_quantized = True
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


# Above this many tensors in a subtree, `parameters()` scans every node instead of walking it.
_SCAN_ABOVE = 10_000


def _direct_tensors(module: nn.Module) -> Iterator[tuple[str, Any, NodeKind]]:
    """A module's own parameters, quantized weights, buffers, and tensors set as plain
    attributes."""
    for name, param in module._parameters.items():
        if param is not None:
            yield name, param, NodeKind.PARAMETER
    # A quantized layer's pieces are buffers; its logical weight is shown instead of them.
    quantized = module.__dict__.get("_quantized")
    hidden = module.__dict__.get("_quantized_pieces", ())
    if quantized:
        for name, weight in quantized.items():
            yield name, weight, NodeKind.QUANTIZED
    non_persistent = module._non_persistent_buffers_set
    for name, buffer in module._buffers.items():
        if buffer is not None and name not in hidden:
            kind = NodeKind.NONPERSISTENT_BUFFER if name in non_persistent else NodeKind.BUFFER
            yield name, buffer, kind
    tensor_type = torch.Tensor
    unregistered = [(k, v) for k, v in vars(module).items() if isinstance(v, tensor_type)]
    for name, value in unregistered:
        yield name, value, NodeKind.UNREGISTERED_TENSOR
