"""Edits: small objects that apply and undo themselves on a model, and say what they did.

Each edit also writes itself as Python (`as_code`) that performs the same change on a freshly
built model, bit for bit: edits that draw random numbers carry their seed.

Here: the base class and what every edit shares. Freezing is in `freezing.py`, re-initialising
in `reinit.py`, replace/delete/insert/add in `modules.py`; `registry.py` names them all.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from modelbrowse.core.edits.specs import build_module
from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.paths import (
    get_module,
    split_path,
)

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex


class EditError(ModelBrowseError):
    """An edit that makes no sense where it was asked for; the model is unchanged."""


def new_seed() -> int:
    return secrets.randbelow(2**31)


def tensor_at(model: nn.Module, path: str) -> torch.Tensor:
    """The parameter or buffer at a path."""
    owner_path, name = split_path(path)
    owner = get_module(model, owner_path)
    tensor: torch.Tensor | None = owner._parameters.get(name)
    if tensor is None:
        tensor = owner._buffers.get(name)
    if tensor is None:
        raise EditError(f"no parameter or buffer at {path!r}")
    return tensor


def is_module_path(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def module_paths(model: nn.Module, module: nn.Module) -> list[str]:
    """Every path under which `module` is reachable in `model`, in tree order."""
    found: list[str] = []
    stack: list[tuple[str, nn.Module, tuple[int, ...]]] = [("", model, (id(model),))]
    while stack:  # named_modules(remove_duplicate=False) without its nested generators
        path, current, seen = stack.pop()
        if current is module:
            found.append(path)
            continue  # a module does not contain itself
        children = [
            (f"{path}.{name}" if path else name, sub, (*seen, id(sub)))
            for name, sub in current._modules.items()
            if sub is not None and id(sub) not in seen
        ]
        stack.extend(reversed(children))
    return found


def placement(model: nn.Module, path: str) -> tuple[torch.device, torch.dtype | None]:
    """Device and floating dtype a new module at `path` should take: its predecessor's."""
    candidates = [path]
    parent = path
    while parent:
        parent = split_path(parent)[0]
        candidates.append(parent)
    for candidate in candidates:
        if not is_module_path(model, candidate):
            continue
        module = get_module(model, candidate)
        tensor: torch.Tensor | None = next(module.parameters(), None)
        if tensor is None:
            tensor = next(module.buffers(), None)
        if tensor is not None:
            dtype = tensor.dtype if tensor.dtype.is_floating_point else None
            return tensor.device, dtype
    return torch.device("cpu"), None


_SEEDED = threading.Lock()


@contextlib.contextmanager
def seeded(seed: int, devices: Sequence[torch.device] = ()) -> Iterator[None]:
    """Draw random numbers from `seed`, leaving the caller's random state as it was.

    torch's generator is one for the process: a seeded build in a worker thread and a seeded
    re-init elsewhere would interleave their draws, and neither would be what its seed says.
    """
    with _SEEDED, torch.random.fork_rng(devices=list(devices)):
        torch.manual_seed(seed)
        yield


def build_seeded(
    spec: str, seed: int, device: torch.device, dtype: torch.dtype | None
) -> nn.Module:
    """Build a spec's module from a seed, as `torch.manual_seed(seed)` then the call would."""
    with seeded(seed):  # building on meta first draws no random numbers
        module = build_module(spec)
    return module.to(device=device, dtype=dtype) if dtype else module.to(device=device)


def placement_code(device: torch.device, dtype: torch.dtype | None) -> str:
    parts = []
    if device.type != "cpu":
        parts.append(f"device={str(device)!r}")
    if dtype is not None and dtype != torch.get_default_dtype():
        parts.append(f"dtype={dtype}")
    return f".to({', '.join(parts)})" if parts else ""


class Edit(ABC):
    """One reversible change to a model."""

    op: ClassVar[str]
    path: str

    @abstractmethod
    def apply(self, model: nn.Module) -> None: ...

    @abstractmethod
    def undo(self, model: nn.Module) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """In words, for the edit log and the status line."""

    @abstractmethod
    def as_code(self) -> list[str]:
        """Python statements on `model` that make the same change (valid once applied)."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly record, for the recipe."""

    def records(self) -> list[dict[str, Any]]:
        """What the recipe holds for this edit (an edit made of others holds theirs)."""
        return [self.to_dict()]

    @property
    def changes_structure(self) -> bool:
        """True when modules were added, removed or replaced (the shape check runs again)."""
        return False

    def touched(self) -> list[str]:
        """The paths whose subtrees this edit changes (counts, structure)."""
        return [self.path]

    def update_index(self, index: NodeIndex) -> None:
        """Bring `index` up to date after this edit was applied or undone, touching only what
        changed: the subtrees at `touched()` and their ancestors."""
        if self.changes_structure:
            index.refresh_structure(self.touched())
        else:
            index.refresh_values(self.touched())


def iter_code(edits: list[Edit]) -> Iterator[str]:
    for edit in edits:
        yield f"# {edit.describe()}"
        yield from edit.as_code()
