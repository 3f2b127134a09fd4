"""A node index over a weight file's keys, built without torch: the tree shown while torch loads.

The keys nest into modules exactly as `core.weights_tree` nests them (the same classes' names,
parameters before buffers before submodules, ties by storage and layout), so the tree, its paths
and its totals are those of the index the full open builds. Its nodes hold stand-ins that answer
what the widgets read (shape, dtype, device, requires_grad, numel, element size) from the
records; nothing here has values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelbrowse.core.index_reading import IndexReading, collector_paused
from modelbrowse.core.nodes import Node, NodeKind, StandIn
from modelbrowse.core.reading.limits import DEFAULT_LIMITS
from modelbrowse.core.reading.records import TensorRecord
from modelbrowse.core.structure import NotShown, Structure

# As core.weights_tree decides: buffers of torch's own layers; any other floating tensor is
# shown as a parameter.
BUFFER_NAMES = frozenset(
    {"running_mean", "running_var", "num_batches_tracked", "position_ids", "inv_freq"}
)


class ModuleStandIn(StandIn):
    """A module of the keys' tree; its class's name is the one the full open's module has."""

    __slots__ = ()

    def extra_repr(self) -> str:
        return ""


class Weights(ModuleStandIn):
    """The root of a checkpoint opened without an architecture."""

    __slots__ = ()


class Group(ModuleStandIn):
    """The tensors under one dotted prefix of a checkpoint's keys."""

    __slots__ = ()


class TensorStandIn(StandIn):
    """A tensor as its record describes it: no values until torch maps them."""

    __slots__ = ("record",)
    device = "cpu"
    is_meta = False
    requires_grad = False

    def __init__(self, record: TensorRecord) -> None:
        self.record = record

    @property
    def shape(self) -> tuple[int, ...]:
        return self.record.shape

    @property
    def dtype(self) -> str:
        return self.record.dtype

    def numel(self) -> int:
        return self.record.numel

    def element_size(self) -> int:
        return self.record.itemsize


class ParameterStandIn(TensorStandIn):
    """A tensor the full open makes an `nn.Parameter` (trainable)."""

    __slots__ = ()
    is_parameter = True
    requires_grad = True


def is_floating(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "complex"))


def is_buffer_key(key: str, record: TensorRecord) -> bool:
    return key.rpartition(".")[2] in BUFFER_NAMES or not is_floating(record.dtype)


@dataclass
class _Module:
    """A module being built: its children by kind, in key order, and the names taken."""

    node: Node
    parameters: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)


class StructureIndex(IndexReading):
    """The read side of a node index, over a Structure's keys."""

    is_preview = True

    def __init__(self, structure: Structure) -> None:
        self.structure = structure
        self._nodes = {}
        self._paths_by_id = {}
        self._totals = {}
        self._in_tree_order = False
        with collector_paused():
            self._build(structure)
            self._compute_totals()

    def _build(self, structure: Structure) -> None:
        root = Node("", "Weights", NodeKind.MODULE, Weights(), None, 0)
        modules = {"": _Module(root)}
        self._nodes[""] = root
        shared: dict[tuple[object, ...], TensorStandIn] = {}
        deepest = DEFAULT_LIMITS.depth
        for key, record in structure.tensors.items():
            if key.count(".") >= deepest or "" in key.split("."):
                raise NotShown
            prefix, _, name = key.rpartition(".")
            parent = self._module(modules, prefix)
            if name in parent.taken:
                raise NotShown  # a tensor and the prefix of other keys
            parent.taken.add(name)
            identity = _layout(record)
            stand_in = shared.get(identity) if identity is not None else None
            if stand_in is None:
                buffer = is_buffer_key(key, record)
                stand_in = TensorStandIn(record) if buffer else ParameterStandIn(record)
                if identity is not None:
                    shared[identity] = stand_in
            kind = NodeKind.PARAMETER if stand_in.is_parameter else NodeKind.BUFFER
            node = Node(key, name, kind, stand_in, prefix, parent.node.depth + 1)
            self._nodes[key] = node
            (parent.parameters if stand_in.is_parameter else parent.buffers).append(key)
        for module in modules.values():
            module.node.children = module.parameters + module.buffers + module.modules
        self._nodes = {path: self._nodes[path] for path in self._ordered("")}
        self._in_tree_order = True
        for path, node in self._nodes.items():
            self._paths_by_id.setdefault(id(node.obj), []).append(path)

    def _module(self, modules: dict[str, _Module], prefix: str) -> _Module:
        """The module for `prefix`, made with any missing ancestors (a loop: no recursion)."""
        found = modules.get(prefix)
        if found is not None:
            return found
        missing = [prefix]
        outer = prefix.rpartition(".")[0]
        while outer and outer not in modules:
            missing.append(outer)
            outer = outer.rpartition(".")[0]
        for path in reversed(missing):
            outer, _, name = path.rpartition(".")
            parent = modules[outer]
            if name in parent.taken:
                raise NotShown  # a tensor and the prefix of other keys
            parent.taken.add(name)
            node = Node(path, name, NodeKind.MODULE, Group(), outer, parent.node.depth + 1)
            self._nodes[path] = node
            parent.modules.append(path)
            modules[path] = _Module(node)
        return modules[prefix]

    @property
    def is_meta(self) -> bool:
        return False


def _layout(record: TensorRecord) -> tuple[object, ...] | None:
    """Same storage, offset, shape, strides and dtype: one tensor saved under two keys (the full
    open maps each storage once, so these are the tensors it finds tied)."""
    if record.numel == 0:
        return None
    storage = record.storage
    return (storage.file, storage.start, record.offset, record.shape, record.stride, record.dtype)


def preview_index(structure: Structure) -> StructureIndex | None:
    """The index of a structure, or None when its keys cannot form the full open's tree."""
    try:
        return StructureIndex(structure)
    except NotShown:
        return None
