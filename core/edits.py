"""Edits: small objects that apply and undo themselves on a model, and say what they did.

Each edit also writes itself as Python (`as_code`) that performs the same change on a freshly
built model, bit for bit: edits that draw random numbers carry their seed.

Here: the base class, what every edit shares, and freezing. Re-initialising is in
`reinit_edits.py`, replace/delete/insert/add in `module_edits.py`; `edit_types.py` names them all.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.norm_stats import (
    freeze_code,
    freeze_stats,
    release_code,
    release_stats,
    stats_frozen,
    tracking_batch_norms,
)
from modelbrowse.core.paths import (
    code_ref,
    get_module,
    split_path,
    subtree_parameters,
)
from modelbrowse.core.specs import build_module

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


# --- freeze / unfreeze -------------------------------------------------------------------------


@dataclass
class SetTrainable(Edit):
    """`requires_grad_(trainable)` on every parameter of a subtree, or on one parameter.

    With `norm_stats`, the subtree's BatchNorm layers also stop (or resume) updating their
    running statistics: see `norm_stats.py`.
    """

    path: str
    trainable: bool
    norm_stats: bool = False
    # The subtree's parameters where the caller already has them: the app reads them from its
    # index in milliseconds, where walking a model of 100,000 modules takes a third of a
    # second. None: the model is walked. Not part of the recipe.
    parameters: list[nn.Parameter] | None = field(default=None, repr=False, compare=False)
    # Where the caller knows that every one of them had the same `requires_grad` (the index's
    # counts tell), that flag: reading 120,000 scattered flags back costs tens of milliseconds.
    # None: each flag is read. Not part of the recipe.
    all_were: bool | None = field(default=None, repr=False, compare=False)
    op: ClassVar[str] = "set_trainable"
    _params: Sequence[torch.Tensor] = field(default_factory=list, repr=False)
    _flags_before: list[bool] = field(default_factory=list, repr=False)
    _applied: bool = field(default=False, repr=False)
    _norms: list[tuple[nn.Module, bool, bool]] = field(default_factory=list, repr=False)
    _code: list[str] = field(default_factory=list, repr=False)

    def apply(self, model: nn.Module) -> None:
        norms: list[nn.Module] = []
        params: Sequence[torch.Tensor]
        if is_module_path(model, self.path):
            module = get_module(model, self.path)
            params = subtree_parameters(module) if self.parameters is None else self.parameters
            if self.norm_stats:
                norms = tracking_batch_norms(module)
        else:
            tensor = tensor_at(model, self.path)
            if not isinstance(tensor, nn.Parameter):
                raise EditError(f"{self.path} is a buffer: buffers have no requires_grad to set")
            if self.norm_stats:
                raise EditError(f"{self.path} is a tensor: running statistics belong to modules")
            params = [tensor]
        if not params and not norms:
            raise EditError(f"{self.path or 'the model'} has no parameters to freeze")
        self._params = params
        self._norms = [(m, stats_frozen(m), m.training) for m in norms]
        trainable = self.trainable
        before: list[bool] = []
        if self.all_were is not None:
            for param in params:
                param.requires_grad = trainable
        else:
            keep = before.append
            for param in params:  # one loop for both: 120,000 parameters in a big model
                keep(param.requires_grad)
                param.requires_grad = trainable
        self._flags_before = before
        for norm in norms:
            if trainable:
                release_stats(norm, model.training)
            else:
                freeze_stats(norm)
        self._applied = True
        ref = code_ref(model, self.path)
        self._code = [f"{ref}.requires_grad_({trainable})"] if params else []
        if norms:
            self._code += release_code(ref) if trainable else freeze_code(ref)

    def undo(self, model: nn.Module) -> None:
        if self.all_were is not None:
            flag = self.all_were
            for param in self._params:
                param.requires_grad = flag
        else:
            for param, flag in zip(self._params, self._flags_before, strict=True):
                param.requires_grad = flag
        for norm, was_frozen, training in self._norms:
            if was_frozen:
                freeze_stats(norm)
            else:
                release_stats(norm, training)
            norm.train(training)
        self._applied = False

    def update_index(self, index: NodeIndex) -> None:
        if not self._params:  # running statistics only: no counts change
            return
        if self._applied:
            flags = {self.trainable}
        else:
            flags = set(self._flags_before) if self.all_were is None else {self.all_were}
        if len(flags) == 1:  # all alike (after apply always; after undo usually)
            index.set_trainable(self.path, flags.pop())
        else:
            index.refresh_values([self.path])

    def describe(self) -> str:
        what = f"{'unfreeze' if self.trainable else 'freeze'} {self.path or 'the whole model'}"
        if self.norm_stats:
            what += " and its BatchNorm running statistics"
        return what

    def as_code(self) -> list[str]:
        return self._code

    def to_dict(self) -> dict[str, Any]:
        record = {"op": self.op, "path": self.path, "trainable": self.trainable}
        if self.norm_stats:  # absent in recipes written before it existed
            record["norm_stats"] = True
        return record


def iter_code(edits: list[Edit]) -> Iterator[str]:
    for edit in edits:
        yield f"# {edit.describe()}"
        yield from edit.as_code()
