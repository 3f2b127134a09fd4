"""A module tree built from a flat state_dict, for checkpoints opened without an architecture.

Dotted keys become nested modules, so the tree, totals and saving work as for any model, and
`state_dict()` gives back exactly the keys it was built from. Without the architecture nothing says
which tensors were parameters and which were buffers; names and dtypes decide (see `is_buffer_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from modelbrowse.core.errors import SourceError
from modelbrowse.core.nodes import FromKeys
from modelbrowse.core.quantized import QuantizedTensor
from modelbrowse.core.quantized_weights import QuantizedKeys, QuantizedWeight
from modelbrowse.core.reading.limits import DEFAULT_LIMITS
from modelbrowse.core.reading.quantized_layouts import QuantizedLayout
from modelbrowse.core.units import printable

# Buffers of torch's own layers; any other floating tensor is shown as a parameter.
BUFFER_NAMES = frozenset(
    {"running_mean", "running_var", "num_batches_tracked", "position_ids", "inv_freq"}
)


class Weights(FromKeys, nn.Module):
    """The root of a checkpoint opened without an architecture."""

    def forward(self, *args: object) -> None:
        raise TypeError("a checkpoint opened without an architecture cannot run")


class Group(FromKeys, nn.Module):
    """The tensors under one dotted prefix of a checkpoint's keys."""

    def forward(self, *args: object) -> None:
        raise TypeError("a checkpoint opened without an architecture cannot run")


def is_buffer_key(key: str, tensor: torch.Tensor) -> bool:
    name = key.rpartition(".")[2]
    return name in BUFFER_NAMES or not (tensor.is_floating_point() or tensor.is_complex())


def tree_from_state_dict(
    state: Mapping[str, torch.Tensor], quantized: QuantizedKeys | None = None
) -> Weights:
    """Nest the keys into modules; tensors sharing storage and layout stay one object (a tie).

    The pieces of a quantized layer (`quantized`) are kept as buffers of its module under their
    own names, so `state_dict()` gives them back as they were, and shown as one logical weight
    (a `QuantizedWeight` in the module's `_quantized`, which `core.index` lists)."""
    root = Weights()
    groups: dict[str, nn.Module] = {"": root}
    shared: dict[tuple[object, ...], nn.Parameter | torch.Tensor] = {}
    deepest = DEFAULT_LIMITS.depth
    owner = quantized.owner if quantized is not None else {}
    for key, tensor in state.items():
        if owner and key in owner:
            assert quantized is not None
            _add_piece(groups, quantized.layouts[owner[key]], key, tensor, state)
            continue
        if key.count(".") >= deepest:
            raise SourceError(
                f"the key {printable(key, 80)!r} has more than {deepest} parts; "
                "it cannot be shown as a tree"
            )
        if "" in key.split("."):
            raise SourceError(
                f"the key {key!r} has an empty part between its dots; "
                "it cannot be shown as a tree (open it with --arch, or rename the key)"
            )
        prefix, _, name = key.rpartition(".")
        parent = _group(groups, prefix, key)
        if name in parent._modules:
            raise SourceError(
                f"the key {key!r} is both a tensor and the prefix of other keys; "
                "it cannot be shown as a tree"
            )
        identity = _layout(tensor)
        value = shared.get(identity) if identity is not None else None
        if value is None:
            if is_buffer_key(key, tensor):
                value = tensor
            else:
                value = nn.Parameter(tensor, requires_grad=True)
            if identity is not None:
                shared[identity] = value
        # Written into the dicts directly: a key may be any string, even one that is also the
        # name of an nn.Module method ("to", "type"), and state_dict() still round-trips it.
        if isinstance(value, nn.Parameter):
            parent._parameters[name] = value
        else:
            parent._buffers[name] = value
    return root


def _add_piece(
    groups: dict[str, nn.Module],
    layout: QuantizedLayout,
    key: str,
    tensor: torch.Tensor,
    state: Mapping[str, torch.Tensor],
) -> None:
    """A piece of a quantized layer, kept as a buffer of the module its logical weight is in;
    the logical weight is made with its first piece."""
    prefix, _, name = layout.key.rpartition(".")
    parent = _group(groups, prefix, key)
    made: dict[str, QuantizedWeight] = parent.__dict__.setdefault("_quantized", {})
    hidden: set[str] = parent.__dict__.setdefault("_quantized_pieces", set())
    if name in parent._modules or (name in parent._parameters and name not in made):
        raise SourceError(f"the key {key!r} is both a tensor and the prefix of other keys")
    piece = key[len(prefix) + 1 :] if prefix else key
    parent._buffers[piece] = tensor
    hidden.add(piece)
    if name not in made:
        pieces = {role: state[k] for role, k in layout.pieces.items()}
        nbytes = sum(t.numel() * t.element_size() for t in pieces.values())
        made[name] = QuantizedWeight(layout, pieces, nbytes)


def _group(groups: dict[str, nn.Module], prefix: str, key: str) -> nn.Module:
    """The module for `prefix`, made with any missing ancestors (a loop: no recursion)."""
    found = groups.get(prefix)
    if found is not None:
        return found
    missing = [prefix]
    outer = prefix.rpartition(".")[0]
    while outer and outer not in groups:
        missing.append(outer)
        outer = outer.rpartition(".")[0]
    for path in reversed(missing):
        outer, _, name = path.rpartition(".")
        parent = groups[outer]
        if name in parent._parameters or name in parent._buffers:
            raise SourceError(
                f"the key {path!r} is both a tensor and the prefix of {key!r}; "
                "it cannot be shown as a tree"
            )
        group = Group()
        parent._modules[name] = group
        groups[path] = group
    return groups[prefix]


def _layout(tensor: torch.Tensor) -> tuple[object, ...] | None:
    """Same storage, offset, shape, strides and dtype: the same tensor saved under two keys."""
    if tensor.is_meta or tensor.numel() == 0 or tensor.layout is not torch.strided:
        return None
    if isinstance(tensor, QuantizedTensor):  # blocks apart from every other's: never tied
        return None
    storage = tensor.untyped_storage()
    return (
        storage.data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tensor.stride(),
        tensor.dtype,
    )


@dataclass
class RemovedWeight:
    """A quantized weight taken out of its module, with what undoing that puts back."""

    name: str
    weight: QuantizedWeight
    buffers: list[tuple[str, torch.Tensor | None]]  # the module's buffers before, in order
    hidden: set[str]

    @property
    def keys(self) -> list[str]:
        return list(self.weight.keys.values())


def remove_quantized(module: nn.Module, name: str) -> RemovedWeight:
    """Take the quantized weight `name` and its pieces out of `module`."""
    made: dict[str, QuantizedWeight] = module.__dict__["_quantized"]
    hidden: set[str] = module.__dict__["_quantized_pieces"]
    weight = made[name]
    removed = RemovedWeight(name, weight, list(module._buffers.items()), set(hidden))
    prefix = weight.layout.key.rpartition(".")[0]
    for key in weight.keys.values():
        piece = key[len(prefix) + 1 :] if prefix else key
        module._buffers.pop(piece, None)
        hidden.discard(piece)
    made.pop(name)
    return removed


def restore_quantized(module: nn.Module, removed: RemovedWeight) -> None:
    """Undo `remove_quantized`: the weight and its buffers back in their places."""
    made: dict[str, QuantizedWeight] = module.__dict__["_quantized"]
    made[removed.name] = removed.weight
    module._buffers.clear()
    module._buffers.update(removed.buffers)
    module.__dict__["_quantized_pieces"] = removed.hidden


def quantized_at(model: nn.Module, path: str) -> QuantizedWeight | None:
    """The quantized weight at `path`, or None when there is none."""
    parent_path, _, name = path.rpartition(".")
    try:
        parent = model.get_submodule(parent_path)
    except AttributeError:
        return None
    made: dict[str, QuantizedWeight] | None = parent.__dict__.get("_quantized")
    return made.get(name) if made else None
