"""Edits: small objects that apply and undo themselves on a model, and say what they did.

Each edit also writes itself as Python (`as_code`) that performs the same change on a freshly
built model, bit for bit: edits that draw random numbers carry their seed.
"""

from __future__ import annotations

import keyword
import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
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
    set_module,
    split_path,
    subtree_parameters,
)
from modelbrowse.core.specs import build_module, spec_code

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


def _build_seeded(
    spec: str, seed: int, device: torch.device, dtype: torch.dtype | None
) -> nn.Module:
    """Build a spec's module from a seed, as `torch.manual_seed(seed)` then the call would."""
    with torch.random.fork_rng(devices=[]):  # building on meta first draws no random numbers
        torch.manual_seed(seed)
        module = build_module(spec)
    return module.to(device=device, dtype=dtype) if dtype else module.to(device=device)


def _placement_code(device: torch.device, dtype: torch.dtype | None) -> str:
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
    op: ClassVar[str] = "set_trainable"
    _previous: list[tuple[torch.Tensor, bool]] = field(default_factory=list, repr=False)
    _norms: list[tuple[nn.Module, bool, bool]] = field(default_factory=list, repr=False)
    _code: list[str] = field(default_factory=list, repr=False)

    def apply(self, model: nn.Module) -> None:
        norms: list[nn.Module] = []
        if is_module_path(model, self.path):
            module = get_module(model, self.path)
            params = subtree_parameters(module)
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
        self._previous = [(p, p.requires_grad) for p in params]
        self._norms = [(m, stats_frozen(m), m.training) for m in norms]
        for param in params:
            param.requires_grad_(self.trainable)
        for norm in norms:
            if self.trainable:
                release_stats(norm, model.training)
            else:
                freeze_stats(norm)
        ref = code_ref(model, self.path)
        self._code = [f"{ref}.requires_grad_({self.trainable})"] if params else []
        if norms:
            self._code += release_code(ref) if self.trainable else freeze_code(ref)

    def undo(self, model: nn.Module) -> None:
        for param, flag in self._previous:
            param.requires_grad_(flag)
        for norm, was_frozen, training in self._norms:
            if was_frozen:
                freeze_stats(norm)
            else:
                release_stats(norm, training)
            norm.train(training)

    def update_index(self, index: NodeIndex) -> None:
        flags = {param.requires_grad for param, _ in self._previous}
        if len(flags) == 1:  # all alike (after apply always; after undo usually)
            index.set_trainable(self.path, flags.pop())
        elif flags:
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


# --- re-initialise -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheme:
    """An initialisation scheme for weights: the nn.init function and its arguments."""

    name: str
    function: str
    arguments: str = ""
    needs_matrix: bool = False

    def run(self, tensor: torch.Tensor) -> None:
        init: Callable[..., Any] = getattr(nn.init, self.function)
        kwargs: dict[str, float] = {}
        if self.arguments:
            key, _, value = self.arguments.partition("=")
            kwargs[key] = float(value)
        init(tensor, **kwargs)

    def code(self, ref: str) -> str:
        extra = f", {self.arguments}" if self.arguments else ""
        return f"nn.init.{self.function}({ref}{extra})"


RESET_PARAMETERS = "reset_parameters"
SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in (
        Scheme("xavier_uniform", "xavier_uniform_", needs_matrix=True),
        Scheme("xavier_normal", "xavier_normal_", needs_matrix=True),
        Scheme("kaiming_uniform", "kaiming_uniform_", needs_matrix=True),
        Scheme("kaiming_normal", "kaiming_normal_", needs_matrix=True),
        Scheme("normal(std=0.01)", "normal_", "std=0.01"),
        Scheme("trunc_normal(std=0.02)", "trunc_normal_", "std=0.02"),
        Scheme("zeros", "zeros_"),
        Scheme("ones", "ones_"),
    )
}
SCHEME_NAMES = [RESET_PARAMETERS, *SCHEMES]

_WEIGHTED = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.Embedding, nn.EmbeddingBag)
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


@dataclass
class _InitStep:
    """One call of the re-initialisation, run and written as code the same way."""

    path: str
    action: str  # "reset_parameters", "reset_running_stats", "zeros", "ones" or a scheme name

    def run(self, model: nn.Module) -> None:
        if self.action in (RESET_PARAMETERS, "reset_running_stats"):
            getattr(get_module(model, self.path), self.action)()
        else:
            SCHEMES[self.action].run(tensor_at(model, self.path))

    def code(self, model: nn.Module) -> str:
        ref = code_ref(model, self.path)
        if self.action in (RESET_PARAMETERS, "reset_running_stats"):
            return f"{ref}.{self.action}()"
        return SCHEMES[self.action].code(ref)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def init_steps(model: nn.Module, path: str, scheme: str) -> tuple[list[_InitStep], list[str]]:
    """The calls a re-initialisation makes, in order, and the modules it leaves as they are."""
    if scheme != RESET_PARAMETERS and scheme not in SCHEMES:
        raise EditError(f"unknown scheme {scheme!r} (choose from {', '.join(SCHEME_NAMES)})")
    if not is_module_path(model, path):
        tensor = tensor_at(model, path)
        if scheme == RESET_PARAMETERS:
            raise EditError("reset_parameters applies to modules: choose a scheme for a tensor")
        if not tensor.is_floating_point() and scheme not in ("zeros", "ones"):
            raise EditError(f"{scheme} needs a floating-point tensor; {path} is {tensor.dtype}")
        if SCHEMES[scheme].needs_matrix and tensor.dim() < 2:
            raise EditError(
                f"{scheme} needs a tensor of 2 or more dimensions; {path} has {tensor.dim()}"
            )
        return [_InitStep(path, scheme)], []
    steps: list[_InitStep] = []
    skipped: list[str] = []
    for sub_path, module in get_module(model, path).named_modules():
        full = _join(path, sub_path)
        has_own = any(p is not None for p in module._parameters.values())
        if scheme == RESET_PARAMETERS:
            if callable(getattr(module, RESET_PARAMETERS, None)):
                steps.append(_InitStep(full, RESET_PARAMETERS))
            elif has_own:
                skipped.append(full)
            continue
        if isinstance(module, _WEIGHTED) and module._parameters.get("weight") is not None:
            steps.append(_InitStep(_join(full, "weight"), scheme))
            if module._parameters.get("bias") is not None:
                steps.append(_InitStep(_join(full, "bias"), "zeros"))
        elif isinstance(module, _NORMS):
            if module._parameters.get("weight") is not None:
                steps.append(_InitStep(_join(full, "weight"), "ones"))
            if module._parameters.get("bias") is not None:
                steps.append(_InitStep(_join(full, "bias"), "zeros"))
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
                steps.append(_InitStep(full, "reset_running_stats"))
        elif has_own:
            skipped.append(full)
    if not steps:
        raise EditError(f"nothing to re-initialise in {path or 'the model'}")
    return steps, skipped


@dataclass
class Reinit(Edit):
    """Re-initialise a subtree (or one tensor) with a scheme, from a recorded seed."""

    path: str
    scheme: str = RESET_PARAMETERS
    seed: int = field(default_factory=new_seed)
    op: ClassVar[str] = "reinit"
    skipped: list[str] = field(default_factory=list, repr=False)
    _saved: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list, repr=False)
    _code: list[str] = field(default_factory=list, repr=False)

    def apply(self, model: nn.Module) -> None:
        steps, self.skipped = init_steps(model, self.path, self.scheme)
        tensors = _tensors_touched(model, self.path)
        self._saved = [(t, t.detach().clone()) for t in tensors]
        self._code = [f"torch.manual_seed({self.seed})", *(s.code(model) for s in steps)]
        devices = [t.device for t in tensors if t.device.type == "cuda"]
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(self.seed)
            for step in steps:
                step.run(model)

    def undo(self, model: nn.Module) -> None:
        with torch.no_grad():
            for tensor, saved in self._saved:
                tensor.copy_(saved)

    def touched(self) -> list[str]:
        return []  # values change in place; no count does

    def describe(self) -> str:
        return (
            f"re-initialise {self.path or 'the whole model'} with {self.scheme} (seed {self.seed})"
        )

    def as_code(self) -> list[str]:
        return list(self._code)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "path": self.path, "scheme": self.scheme, "seed": self.seed}


def _tensors_touched(model: nn.Module, path: str) -> list[torch.Tensor]:
    if not is_module_path(model, path):
        return [tensor_at(model, path)]
    module = get_module(model, path)
    return [*module.parameters(), *module.buffers()]


# --- replace, delete, insert -------------------------------------------------------------------


def _assign_code(model: nn.Module, path: str, value: str) -> str:
    """`ref = value`; `setattr(parent, 'name', value)` where the ref is a getattr() call."""
    ref = code_ref(model, path)
    if ref.endswith(")"):  # getattr(model.seq, 'conv-1'): a call cannot be assigned to
        parent, name = split_path(path)
        return f"setattr({code_ref(model, parent)}, {name!r}, {value})"
    return f"{ref} = {value}"


@dataclass
class Replace(Edit):
    """Put a new module, built from a spec, at a path (and at every alias of the old one)."""

    path: str
    spec: str
    seed: int = field(default_factory=new_seed)
    allow_root: bool = False
    op: ClassVar[str] = "replace"
    old: nn.Module | None = field(default=None, repr=False)
    new: nn.Module | None = field(default=None, repr=False)
    # Every path of the module replaced; a caller with a node index may pass them (walking a
    # 100,000-module model to find them takes a quarter of a second).
    aliases: list[str] = field(default_factory=list, repr=False)
    _code: list[str] = field(default_factory=list, repr=False)
    _root_holder: list[nn.Module] = field(default_factory=list, repr=False)

    @property
    def changes_structure(self) -> bool:
        return True

    def apply(self, model: nn.Module) -> None:
        if not self.path and not self.allow_root:
            raise EditError("the root cannot be replaced from the app")
        if not self.path:
            raise EditError("replace the root by opening another source instead")
        if not is_module_path(model, self.path):
            raise EditError(f"{self.path} is not a module")
        self.old = get_module(model, self.path)
        if self.path not in self.aliases:  # given by the caller's index, or found here
            self.aliases = module_paths(model, self.old)
        device, dtype = placement(model, self.path)
        if self.new is None:  # a redo puts back the same new object
            self.new = _build_seeded(self.spec, self.seed, device, dtype)
            self.new.train(self.old.training)  # a model in eval mode stays in eval mode
        code = spec_code(self.spec) + _placement_code(device, dtype)
        first = code_ref(model, self.aliases[0])
        self._code = [f"torch.manual_seed({self.seed})", _assign_code(model, self.aliases[0], code)]
        self._code += [_assign_code(model, alias, first) for alias in self.aliases[1:]]
        for alias in self.aliases:
            set_module(model, alias, self.new)

    def undo(self, model: nn.Module) -> None:
        assert self.old is not None
        for alias in self.aliases:
            set_module(model, alias, self.old)

    def touched(self) -> list[str]:
        return list(self.aliases) or [self.path]

    def describe(self) -> str:
        return f"replace {self.path} with {spec_code(self.spec)}"

    def as_code(self) -> list[str]:
        return list(self._code)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "path": self.path, "spec": spec_code(self.spec), "seed": self.seed}


@dataclass
class Delete(Replace):
    """Replace a module with `nn.Identity()`: the usual way to drop a head."""

    spec: str = "nn.Identity()"
    op: ClassVar[str] = "delete"

    def apply(self, model: nn.Module) -> None:
        if not self.path:
            raise EditError("the root cannot be deleted")
        super().apply(model)
        self._code = [line for line in self._code if not line.startswith("torch.manual_seed")]

    def describe(self) -> str:
        return f"delete {self.path} (now nn.Identity())"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "path": self.path}


@dataclass
class Insert(Edit):
    """Insert a module into a Sequential or ModuleList at `index`; later siblings renumber."""

    path: str  # the container
    index: int
    spec: str
    seed: int = field(default_factory=new_seed)
    op: ClassVar[str] = "insert"
    new: nn.Module | None = field(default=None, repr=False)
    _code: list[str] = field(default_factory=list, repr=False)

    @property
    def changes_structure(self) -> bool:
        return True

    def apply(self, model: nn.Module) -> None:
        container = get_module(model, self.path) if is_module_path(model, self.path) else None
        if not isinstance(container, (nn.Sequential, nn.ModuleList)):
            raise EditError(f"{self.path or 'the root'} is not an nn.Sequential or nn.ModuleList")
        if not 0 <= self.index <= len(container):
            where = self.path or "the root"
            raise EditError(f"index {self.index} is outside {where} (0 to {len(container)})")
        if any(not key.isdigit() for key in container._modules):
            raise EditError(f"{self.path} has named children: add a named module instead")
        device, dtype = placement(model, self.path)
        if self.new is None:
            self.new = _build_seeded(self.spec, self.seed, device, dtype)
        code = spec_code(self.spec) + _placement_code(device, dtype)
        ref = code_ref(model, self.path)
        self._code = [f"torch.manual_seed({self.seed})", f"{ref}.insert({self.index}, {code})"]
        container.insert(self.index, self.new)

    def undo(self, model: nn.Module) -> None:
        container = get_module(model, self.path)
        assert isinstance(container, (nn.Sequential, nn.ModuleList))
        container.pop(self.index)

    def describe(self) -> str:
        return f"insert {spec_code(self.spec)} into {self.path or 'the root'} at {self.index}"

    def as_code(self) -> list[str]:
        return list(self._code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "path": self.path,
            "index": self.index,
            "spec": spec_code(self.spec),
            "seed": self.seed,
        }


def child_name_problem(parent: nn.Module, parent_path: str, name: str) -> str | None:
    """Why `name` cannot be a new child of `parent`, or None when it can."""
    if not name.isidentifier() or keyword.iskeyword(name):
        return f"{name!r} is not a valid attribute name"
    if hasattr(parent, name) or name in parent._modules:
        return f"{parent_path or 'the root'} already has an attribute named {name!r}"
    return None


@dataclass
class AddModule(Edit):
    """Add a named child module (`add_module`) to a module that is not a list."""

    path: str  # the parent
    name: str
    spec: str
    seed: int = field(default_factory=new_seed)
    op: ClassVar[str] = "add_module"
    new: nn.Module | None = field(default=None, repr=False)
    _code: list[str] = field(default_factory=list, repr=False)

    @property
    def changes_structure(self) -> bool:
        return True

    def apply(self, model: nn.Module) -> None:
        if not is_module_path(model, self.path):
            raise EditError(f"{self.path} is not a module")
        parent = get_module(model, self.path)
        problem = child_name_problem(parent, self.path, self.name)
        if problem is not None:
            raise EditError(problem)
        device, dtype = placement(model, self.path)
        if self.new is None:
            self.new = _build_seeded(self.spec, self.seed, device, dtype)
        code = spec_code(self.spec) + _placement_code(device, dtype)
        ref = code_ref(model, self.path)
        self._code = [f"torch.manual_seed({self.seed})", f"{ref}.add_module({self.name!r}, {code})"]
        parent.add_module(self.name, self.new)

    def undo(self, model: nn.Module) -> None:
        delattr(get_module(model, self.path), self.name)

    def touched(self) -> list[str]:
        return [_join(self.path, self.name)]

    def describe(self) -> str:
        return f"add {spec_code(self.spec)} as {_join(self.path, self.name)}"

    def as_code(self) -> list[str]:
        return list(self._code)

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "path": self.path,
            "name": self.name,
            "spec": spec_code(self.spec),
            "seed": self.seed,
        }


def iter_code(edits: list[Edit]) -> Iterator[str]:
    for edit in edits:
        yield f"# {edit.describe()}"
        yield from edit.as_code()
