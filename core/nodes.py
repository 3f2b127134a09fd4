"""What the node index is made of: node kinds, nodes, subtree totals, and qualified paths.

Torch-free: the tree of a weight file is drawn from these before torch is imported (the objects
a node holds are then the reading layer's stand-ins, `core.structure_index`); a torch object can
only exist once torch is in `sys.modules`, so that is where the checks look.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelbrowse.core.reading.quantization import Quantization

if TYPE_CHECKING:
    import torch


class NodeKind(enum.Enum):
    """What a node is; the value is the word the detail pane shows."""

    MODULE = "module"
    PARAMETER = "parameter"
    BUFFER = "buffer"
    NONPERSISTENT_BUFFER = "non-persistent buffer"
    UNREGISTERED_TENSOR = "unregistered tensor"
    # The logical weight of a quantized layer, stored as pieces (`core.quantized_weights`).
    QUANTIZED = "quantized weight"


def scripted_name(module: object) -> str | None:
    """The class a TorchScript module was scripted from (Linear, ResNet): its Python class is
    RecursiveScriptModule, which says nothing to the user. None for other modules."""
    if isinstance(module, StandIn) or "torch" not in sys.modules:
        return None  # torch may be importing in a worker: a stand-in never waits for it
    import torch

    from modelbrowse.core.sources.scripted import ScriptedModule

    scripted = getattr(module, "original_name", None)
    if isinstance(module, (torch.jit.ScriptModule, ScriptedModule)) and isinstance(scripted, str):
        return scripted
    return None


USER_FILE_MODULE = "_modelbrowse_user_"
"""How a Python file the user names (`net.py:Net`) is registered in `sys.modules`: this, its
stem and a digest of its path, so that two files of one name stay apart."""


def module_name(cls: type) -> str:
    """The module a class is defined in, as the user knows it: a file's stem for a class from a
    file the user named (`net` for `net.py:Net`), else its dotted name."""
    name = cls.__module__
    if name.startswith(USER_FILE_MODULE):
        stem, _, _digest = name[len(USER_FILE_MODULE) :].rpartition("_")
        return stem or name
    return name


def is_parameter(obj: object) -> bool:
    """An `nn.Parameter`, or a stand-in for one."""
    if isinstance(obj, StandIn):
        return obj.is_parameter
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Parameter)


def quantization_of(tensor: object) -> Quantization | None:
    """How a quantized weight is stored (its stand-in's record, or the tensor's own), or None
    for any other tensor."""
    found = getattr(tensor, "quantization", None)
    return found if isinstance(found, Quantization) else None


class FromKeys:
    """Marks a module class made from a checkpoint's keys, where no architecture was named."""

    __slots__ = ()


class StandIn:
    """What a node holds before torch is imported: a module or tensor as the file describes it."""

    __slots__ = ()
    is_parameter = False


@dataclass(slots=True)
class Totals:
    """Counts over a subtree, each tensor counted once. Owned by the index, which updates
    them in place (freezing 100,000 modules must not create 100,000 objects); read only."""

    params: int = 0
    trainable: int = 0
    buffers: int = 0
    nbytes: int = 0
    tensors: int = 0

    @property
    def frozen(self) -> int:
        return self.params - self.trainable

    @property
    def trainable_alike(self) -> bool | None:
        """True when every parameter element counted is trainable, False when every one is
        frozen, None when mixed or there are none. (An empty parameter counts no elements.)"""
        if not self.params:
            return None
        if self.trainable == self.params:
            return True
        return False if self.trainable == 0 else None

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
    def from_keys(self) -> bool:
        """A module made from a checkpoint's keys rather than from an architecture."""
        return self.kind is NodeKind.MODULE and isinstance(self.obj, FromKeys)

    @property
    def type_name(self) -> str:
        """The class for a module; `Parameter`, `Tensor`, `Quantized` for tensors."""
        if self.kind is NodeKind.MODULE:
            return self.scripted_name or type(self.obj).__name__
        if self.kind is NodeKind.QUANTIZED:
            return "Quantized"
        return "Parameter" if is_parameter(self.obj) else "Tensor"

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
