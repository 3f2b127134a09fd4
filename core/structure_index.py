"""A node index over a weight file's keys, built without torch: the tree shown while torch loads.

The keys nest into modules exactly as `core.weights_tree` nests them (the same classes' names,
parameters before buffers before submodules, ties by storage and layout), so the tree, its paths
and its totals are those of the index the full open builds. Its nodes hold stand-ins that answer
what the widgets read (shape, dtype, device, requires_grad, numel, element size) from the
records; nothing here has values.
"""

from __future__ import annotations

from modelbrowse.core.index_reading import IndexReading, collector_paused
from modelbrowse.core.nodes import FromKeys, Node, NodeKind, StandIn, Totals
from modelbrowse.core.quantized_weights import QuantizedWeight, weight_from_records
from modelbrowse.core.reading.limits import DEFAULT_LIMITS
from modelbrowse.core.reading.quantization import Quantization
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


class Weights(FromKeys, ModuleStandIn):
    """The root of a checkpoint opened without an architecture."""

    __slots__ = ()


class Group(FromKeys, ModuleStandIn):
    """The tensors under one dotted prefix of a checkpoint's keys."""

    __slots__ = ()


class TensorStandIn(StandIn):
    """A tensor as its record describes it: no values until torch maps them. A quantized
    weight is what it stands for (its logical shape and count) at the size it is stored."""

    __slots__ = ("count", "record")
    device = "cpu"
    is_meta = False
    requires_grad = False

    def __init__(self, record: TensorRecord) -> None:
        self.record = record
        quantization = record.quantization
        self.count = record.numel if quantization is None else quantization.numel

    @property
    def shape(self) -> tuple[int, ...]:
        quantization = self.record.quantization
        return self.record.shape if quantization is None else quantization.logical_shape

    @property
    def dtype(self) -> str:
        quantization = self.record.quantization
        return self.record.dtype if quantization is None else quantization.logical_dtype

    @property
    def quantization(self) -> Quantization | None:
        return self.record.quantization

    def numel(self) -> int:
        return self.count

    def element_size(self) -> float:
        """Bytes per element as stored: a fraction for a quantized weight (see
        `core.quantized.QuantizedTensor.element_size`)."""
        if self.record.quantization is None:
            return self.record.itemsize
        return self.record.nbytes / self.count if self.count else 0.0


class ParameterStandIn(TensorStandIn):
    """A tensor the full open makes an `nn.Parameter` (trainable)."""

    __slots__ = ()
    is_parameter = True
    requires_grad = True


def is_floating(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "complex"))


def is_buffer_key(key: str, record: TensorRecord) -> bool:
    if key.rpartition(".")[2] in BUFFER_NAMES:
        return True
    return record.quantization is None and not is_floating(record.dtype)


class _Module:
    """A module being built: its children by kind, in key order, and its own tensors' totals."""

    __slots__ = ("buffers", "modules", "node", "parent", "quantized", "totals")

    def __init__(self, node: Node, parent: _Module | None) -> None:
        self.node = node
        self.parent = parent
        self.buffers: list[str] | None = None  # parameters go straight to node.children
        self.modules: list[str] | None = None
        self.quantized: list[str] | None = None  # after the parameters, as in the full open
        self.totals = Totals()


class StructureIndex(IndexReading):
    """The read side of a node index, over a Structure's keys."""

    is_preview = True

    def __init__(self, structure: Structure) -> None:
        self.structure = structure
        self._nodes = {}
        self._paths_by_id = {}  # only the objects with several paths: the others have one
        self._totals = {}
        self._in_tree_order = False
        with collector_paused():
            self._build(structure)
            self._compute_shared_totals()

    def _build(self, structure: Structure) -> None:
        root = Node("", "Weights", NodeKind.MODULE, Weights(), None, 0)
        nodes = {"": root}
        modules = {"": _Module(root, None)}
        self._nodes = nodes
        ties = _Ties()
        deepest = DEFAULT_LIMITS.depth
        parameter_kind, buffer_kind = NodeKind.PARAMETER, NodeKind.BUFFER
        quantized = structure.quantized_keys
        owner = quantized.owner if quantized is not None else {}
        for key, record in structure.tensors.items():
            if owner and key in owner:
                key = owner[key]
                if key in nodes:
                    continue  # its logical weight is made from its first piece
                assert quantized is not None
                layout = quantized.layouts[key]
                record = weight_from_records(layout, structure.tensors)  # type: ignore[assignment]
            if (
                key.count(".") >= deepest
                or not key
                or key[0] == "."
                or key[-1] == "."
                or ".." in key
            ):
                raise NotShown
            prefix, _, name = key.rpartition(".")
            parent = modules.get(prefix)
            if parent is None:
                parent = self._module(modules, prefix)
            if key in nodes:
                raise NotShown  # a tensor and the prefix of other keys
            if isinstance(record, QuantizedWeight):
                self._add_quantized(parent, key, name, record)
                continue
            stand_in = ties.stand_in(key, record)
            parent_node = parent.node
            numel = stand_in.count
            totals = parent.totals
            totals.tensors += 1
            totals.nbytes += (
                numel * record.itemsize if record.quantization is None else record.nbytes
            )
            if stand_in.is_parameter:
                nodes[key] = Node(
                    key,
                    name,
                    parameter_kind,
                    stand_in,
                    parent_node.path,
                    parent_node.depth + 1,
                )
                parent_node.children.append(key)
                totals.params += numel
                totals.trainable += numel
            else:
                nodes[key] = Node(
                    key,
                    name,
                    buffer_kind,
                    stand_in,
                    parent_node.path,
                    parent_node.depth + 1,
                )
                if parent.buffers is None:
                    parent.buffers = []
                parent.buffers.append(key)
                totals.buffers += numel
        self._totals = {}
        for module in reversed(modules.values()):  # made parents first: children first here
            node = module.node
            if module.quantized is not None:
                node.children += module.quantized
            if module.buffers is not None:
                node.children += module.buffers
            if module.modules is not None:
                node.children += module.modules
            self._totals[node.path] = module.totals
            if module.parent is not None:
                _add(module.parent.totals, module.totals)
        del modules
        ordered: dict[str, Node] = {}
        stack = [""]
        while stack:
            path = stack.pop()
            node = nodes[path]
            ordered[path] = node
            if node.children:
                stack.extend(reversed(node.children))
        self._nodes = ordered
        self._in_tree_order = True
        if ties.shared:
            for path, node in ordered.items():
                if id(node.obj) in ties.shared:
                    self._paths_by_id.setdefault(id(node.obj), []).append(path)

    def _add_quantized(self, parent: _Module, key: str, name: str, weight: QuantizedWeight) -> None:
        """A quantized layer's logical weight: its logical count, its pieces' bytes."""
        node = parent.node
        self._nodes[key] = Node(key, name, NodeKind.QUANTIZED, weight, node.path, node.depth + 1)
        if parent.quantized is None:
            parent.quantized = []
        parent.quantized.append(key)
        totals = parent.totals
        totals.tensors += 1
        totals.nbytes += weight.nbytes
        totals.params += weight.count

    def _module(self, modules: dict[str, _Module], prefix: str) -> _Module:
        """The module for `prefix`, made with any missing ancestors (a loop: no recursion)."""
        missing = [prefix]
        outer = prefix.rpartition(".")[0]
        while outer and outer not in modules:
            missing.append(outer)
            outer = outer.rpartition(".")[0]
        nodes = self._nodes
        for path in reversed(missing):
            outer, _, name = path.rpartition(".")
            parent = modules[outer]
            if path in nodes:
                raise NotShown  # a tensor and the prefix of other keys
            parent_node = parent.node
            node = Node(
                path, name, NodeKind.MODULE, Group(), parent_node.path, parent_node.depth + 1
            )
            nodes[path] = node
            if parent.modules is None:
                parent.modules = []
            parent.modules.append(path)
            modules[path] = _Module(node, parent)
        return modules[prefix]

    @property
    def is_meta(self) -> bool:
        return False


def _add(totals: Totals, more: Totals) -> None:
    totals.params += more.params
    totals.trainable += more.trainable
    totals.buffers += more.buffers
    totals.nbytes += more.nbytes
    totals.tensors += more.tensors


class _Ties:
    """Same storage, offset, shape, strides and dtype: one tensor saved under two keys (the full
    open maps each storage once, so these are the tensors it finds tied). Looked up by file and
    storage start first, without a new object per key."""

    def __init__(self) -> None:
        # file -> storage start -> the stand-in of the first view there; once a second view
        # starts there, a map of their layouts (a storage of a million views stays linear)
        self._by_file: dict[str, dict[int, TensorStandIn | dict[Layout, TensorStandIn]]] = {}
        self._file = ""
        self._starts: dict[int, TensorStandIn | dict[Layout, TensorStandIn]] = {}
        self.shared: set[int] = set()  # ids of the stand-ins found under several keys

    def stand_in(self, key: str, record: TensorRecord) -> TensorStandIn:
        """The stand-in of the tensor `record` is a view of: a new one unless it is tied."""
        if 0 in record.shape:  # an empty view ties to nothing
            return _new_stand_in(key, record)
        storage = record.storage
        if storage.file != self._file:
            self._file = storage.file
            self._starts = self._by_file.setdefault(storage.file, {})
        found = self._starts.get(storage.start)
        if found is None:
            stand_in = self._starts[storage.start] = _new_stand_in(key, record)
            return stand_in
        if isinstance(found, TensorStandIn):
            if found.record is record:
                self.shared.add(id(found))
                return found
            found = self._starts[storage.start] = {_layout(found.record): found}
        layout = _layout(record)
        tied = found.get(layout)
        if tied is not None:
            self.shared.add(id(tied))
            return tied
        stand_in = found[layout] = _new_stand_in(key, record)
        return stand_in


Layout = tuple[int, tuple[int, ...], tuple[int, ...], str]


def _layout(record: TensorRecord) -> Layout:
    return (record.offset, record.shape, record.stride, record.dtype)


def _new_stand_in(key: str, record: TensorRecord) -> TensorStandIn:
    if is_buffer_key(key, record):
        return TensorStandIn(record)
    return ParameterStandIn(record)


def preview_index(structure: Structure) -> StructureIndex | None:
    """The index of a structure, or None when its keys cannot form the full open's tree."""
    try:
        return StructureIndex(structure)
    except NotShown:
        return None
