"""Edits of the module tree: replace, delete (an nn.Identity in its place), insert into a
container, add a named child.

Each builds its new module when first applied, unless it was built beforehand: `to_build`
names what an edit still has to build, so that a caller (the app) can build it elsewhere
(off its UI thread, cancellable) and apply the edit only once it is ready.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from modelbrowse.core.edits.base import (
    Edit,
    EditError,
    build_seeded,
    is_module_path,
    module_paths,
    new_seed,
    placement,
    placement_code,
)
from modelbrowse.core.edits.batch import Batch
from modelbrowse.core.edits.specs import spec_code
from modelbrowse.core.nodes import join_path
from modelbrowse.core.paths import code_ref, get_module, set_module, split_path


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
        if not self.path:
            raise EditError("the root cannot be replaced: open another source instead")
        if not is_module_path(model, self.path):
            raise EditError(f"{self.path} is not a module")
        self.old = get_module(model, self.path)
        if self.path not in self.aliases:  # given by the caller's index, or found here
            self.aliases = module_paths(model, self.old)
        device, dtype = placement(model, self.path)
        if self.new is None:  # a redo puts back the same new object
            self.new = build_seeded(self.spec, self.seed, device, dtype)
            self.new.train(self.old.training)  # a model in eval mode stays in eval mode
        code = spec_code(self.spec) + placement_code(device, dtype)
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
        if not is_positional(container):
            raise EditError(
                f"{self.path or 'the root'} has children not numbered 0 to {len(container) - 1}: "
                "add a named module instead"
            )
        device, dtype = placement(model, self.path)
        if self.new is None:
            self.new = build_seeded(self.spec, self.seed, device, dtype)
        code = spec_code(self.spec) + placement_code(device, dtype)
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


def is_positional(module: object) -> bool:
    """An nn.Sequential or nn.ModuleList whose children are named 0, 1, 2, ... in order: what
    `insert` renumbers (a child added by name, as `add_module('100', ...)`, ends that)."""
    if not isinstance(module, (nn.Sequential, nn.ModuleList)):
        return False
    return all(key == str(i) for i, key in enumerate(module._modules))


def child_name_problem(parent: nn.Module, parent_path: str, name: str) -> str | None:
    """Why `name` cannot be a new child of `parent`, or None when it can: the names
    `add_module` accepts (any text without a dot: `'100'` too), less those already used."""
    if not name:
        return "type a name for the new child"
    if "." in name:
        return f"{name!r} has a dot: a child's name cannot (paths are joined with dots)"
    if not name.isprintable():
        return f"{name!r} has a control character: type a name that can be shown"
    if name in parent._modules:
        return f"{parent_path or 'the root'} already has a child named {name!r}"
    if hasattr(parent, name):
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
            self.new = build_seeded(self.spec, self.seed, device, dtype)
        code = spec_code(self.spec) + placement_code(device, dtype)
        ref = code_ref(model, self.path)
        self._code = [f"torch.manual_seed({self.seed})", f"{ref}.add_module({self.name!r}, {code})"]
        parent.add_module(self.name, self.new)

    def undo(self, model: nn.Module) -> None:
        delattr(get_module(model, self.path), self.name)

    def touched(self) -> list[str]:
        return [join_path(self.path, self.name)]

    def describe(self) -> str:
        return f"add {spec_code(self.spec)} as {join_path(self.path, self.name)}"

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


@dataclass(frozen=True)
class NewModule:
    """A module an edit will attach, and where: built from the edit's spec and seed, as the
    edit would build it when applied (the same bytes), placed as its predecessor."""

    edit: Replace | Insert | AddModule
    device: torch.device
    dtype: torch.dtype | None
    training: bool

    def build(self) -> nn.Module:
        module = build_seeded(self.edit.spec, self.edit.seed, self.device, self.dtype)
        return module.train(self.training)  # a model in eval mode stays in eval mode

    def attach(self, module: nn.Module) -> None:
        """Give the built module to the edit, which then attaches it without building."""
        self.edit.new = module


def to_build(edit: Edit, model: nn.Module) -> list[NewModule]:
    """The modules an edit (every part of a batch) still has to build; a delete's
    nn.Identity() holds nothing and is built when it is applied."""
    found = []
    for part in edit.edits if isinstance(edit, Batch) else [edit]:
        if not isinstance(part, Replace | Insert | AddModule) or isinstance(part, Delete):
            continue
        if part.new is not None:
            continue
        training = True
        if isinstance(part, Replace) and part.path and is_module_path(model, part.path):
            training = get_module(model, part.path).training
        device, dtype = placement(model, part.path)
        found.append(NewModule(part, device, dtype, training))
    return found
