"""The node index: every module, parameter and buffer of a model by qualified path.

Built in one walk over the model. Widgets read it; they never walk `named_modules()` themselves.
A module or tensor reachable under several paths appears under each, and knows its aliases;
subtree totals count every tensor once, as `sum(p.numel() for p in model.parameters())` does.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from modelbrowse.core.errors import ModelBrowseError


class NodeKind(enum.Enum):
    """What a node is; the value is the word the detail pane shows."""

    MODULE = "module"
    PARAMETER = "parameter"
    BUFFER = "buffer"
    NONPERSISTENT_BUFFER = "non-persistent buffer"
    UNREGISTERED_TENSOR = "unregistered tensor"


def scripted_name(module: object) -> str | None:
    """The class a TorchScript module was scripted from (Linear, ResNet): its Python class is
    RecursiveScriptModule, which says nothing to the user. None for other modules."""
    scripted = getattr(module, "original_name", None)
    if isinstance(module, torch.jit.ScriptModule) and isinstance(scripted, str):
        return scripted
    return None


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts over a subtree, each tensor counted once."""

    params: int = 0
    trainable: int = 0
    buffers: int = 0
    nbytes: int = 0
    tensors: int = 0

    @property
    def frozen(self) -> int:
        return self.params - self.trainable

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.params + other.params,
            self.trainable + other.trainable,
            self.buffers + other.buffers,
            self.nbytes + other.nbytes,
            self.tensors + other.tensors,
        )

    def __sub__(self, other: Totals) -> Totals:
        return self + Totals(
            -other.params, -other.trainable, -other.buffers, -other.nbytes, -other.tensors
        )

    def scaled(self, factor: int) -> Totals:
        return Totals(
            self.params * factor,
            self.trainable * factor,
            self.buffers * factor,
            self.nbytes * factor,
            self.tensors * factor,
        )


@dataclass(slots=True)
class Node:
    """One path in the model: a module or a tensor."""

    path: str
    name: str
    kind: NodeKind
    obj: Any
    parent: str | None
    depth: int
    children: list[str] = field(default_factory=list)

    @property
    def is_module(self) -> bool:
        return self.kind is NodeKind.MODULE

    @property
    def scripted_name(self) -> str | None:
        """The class a TorchScript module was scripted from; None for anything else."""
        return scripted_name(self.obj) if self.kind is NodeKind.MODULE else None

    @property
    def type_name(self) -> str:
        """The class for a module; `Parameter`, `Tensor` for tensors."""
        if self.kind is NodeKind.MODULE:
            return self.scripted_name or type(self.obj).__name__
        return "Parameter" if isinstance(self.obj, nn.Parameter) else "Tensor"

    @property
    def tensor(self) -> torch.Tensor:
        if self.kind is NodeKind.MODULE:
            raise TypeError(f"{self.path or '(root)'} is a module, not a tensor")
        tensor: torch.Tensor = self.obj
        return tensor


def join_path(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def parent_path(path: str) -> str | None:
    """'features.0.weight' -> 'features.0'; '' (the root) -> None."""
    if not path:
        return None
    return path.rpartition(".")[0]


def ancestors(path: str) -> Iterator[str]:
    """The proper ancestors of a path, nearest first, ending with the root ''."""
    current = parent_path(path)
    while current is not None:
        yield current
        current = parent_path(current)


_INDEXING = re.compile(r"\[\s*(-?\d+)\s*\]")


def normalise_path(text: str) -> str:
    """Accept how people write paths: `model.classifier[6]` -> `model.classifier.6`."""
    return _INDEXING.sub(r".\1", text.strip()).strip(".")


def path_candidates(text: str) -> list[str]:
    """What `text` may name, most literal first: `model.fc` is `model.fc`, else `fc`."""
    path = normalise_path(text)
    candidates = [path]
    for prefix in ("model", "self"):
        if path == prefix:
            candidates.append("")
        elif path.startswith(prefix + "."):
            candidates.append(path[len(prefix) + 1 :])
    return candidates


class NodeIndex:
    """Path -> node for a model, with aliases for shared objects and subtree totals."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._nodes: dict[str, Node] = {}
        self._paths_by_id: dict[int, list[str]] = {}
        self._totals: dict[str, Totals] = {}
        self._walk()
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

    def child_modules(self, path: str) -> list[Node]:
        return [n for n in self.children(path) if n.is_module]

    def paths(self) -> Iterator[str]:
        """Every path, in tree order (a module, its tensors, then its child modules)."""
        return iter(self._nodes)

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

        found: list[str] = []
        for candidate, node in self._nodes.items():
            if not inside(candidate):
                continue
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
            for path, node in self._nodes.items()
            if path and (needle in path.lower() or needle in node.type_name.lower())
        ]

    # --- building --------------------------------------------------------------------------

    def _add(self, node: Node) -> None:
        self._nodes[node.path] = node
        self._paths_by_id.setdefault(id(node.obj), []).append(node.path)
        if node.parent is not None:
            self._nodes[node.parent].children.append(node.path)

    def _walk(self) -> None:
        root = Node("", type(self.model).__name__, NodeKind.MODULE, self.model, None, 0)
        self._add(root)
        # An explicit stack: a model 10,000 modules deep must not hit the recursion limit.
        stack: list[tuple[nn.Module, str, int, frozenset[int]]] = [
            (self.model, "", 0, frozenset({id(self.model)}))
        ]
        while stack:
            module, path, depth, seen = stack.pop()
            for name, tensor, kind in _direct_tensors(module):
                child = join_path(path, name)
                self._add(Node(child, name, kind, tensor, path, depth + 1))
            pending = []
            for name, sub in module._modules.items():
                if sub is None or id(sub) in seen:  # None placeholders; cycles
                    continue
                child = join_path(path, name)
                self._add(Node(child, name, NodeKind.MODULE, sub, path, depth + 1))
                pending.append((sub, child, depth + 1, seen | {id(sub)}))
            stack.extend(reversed(pending))
        # Tree order: a module's tensors, then its submodules, depth first.
        self._nodes = {path: self._nodes[path] for path in self._ordered("")}

    def _ordered(self, start: str) -> Iterator[str]:
        stack = [start]
        while stack:
            path = stack.pop()
            yield path
            stack.extend(reversed(self._nodes[path].children))

    def _compute_totals(self) -> None:
        totals: dict[str, Totals] = {}
        for path in reversed(list(self._nodes)):
            node = self._nodes[path]
            if not node.is_module:
                continue
            subtotal = Totals()
            for child_path in node.children:
                child = self._nodes[child_path]
                if child.is_module:
                    subtotal = subtotal + totals[child_path]
                elif child.kind in _COUNTED:
                    subtotal = subtotal + _tensor_totals(child)
            totals[path] = subtotal
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
        self._totals = totals


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
    for name, value in vars(module).items():
        if isinstance(value, torch.Tensor):
            yield name, value, NodeKind.UNREGISTERED_TENSOR
