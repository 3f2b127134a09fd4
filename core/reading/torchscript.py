"""TorchScript archives read as data: the module tree from the archive's saved object state.

torch's own loader compiles the archive's code and runs it (a scripted `__setstate__` runs on
load). Here nothing is compiled or run: `data.pkl` goes through the restricted pickle machine,
where each scripted module is a `__torch__.<qualname>` object built from its attribute dict, and
tensors are records of the archive's stored `data/N` members. Which attributes are parameters
and which are buffers the class's code says (`__parameters__ = [...]`, `__buffers__ = [...]`);
that code is parsed with `ast` only to read those two lists, never compiled.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.pickles import Call, Global, load_pickle
from modelbrowse.core.reading.records import TensorRecord
from modelbrowse.core.reading.torch_pickles import TorchHooks, member_storage
from modelbrowse.core.reading.zip_members import ZipMembers

_SCRIPTED = "__torch__."
# The code of one class file is read to this size at most (real ones are kilobytes).
_CODE_BYTES = 4 << 20


@dataclass
class ScriptedModuleRecord:
    """One scripted module: its class, flags and tensors, and its child modules by name."""

    qualname: str  # __torch__.torchvision.models.resnet.ResNet
    training: bool = True
    parameters: dict[str, TensorRecord] = field(default_factory=dict)
    buffers: dict[str, TensorRecord] = field(default_factory=dict)
    children: dict[str, ScriptedModuleRecord] = field(default_factory=dict)
    # The module saved its state through its own `__getstate__`: shown without it.
    own_state: bool = False

    @property
    def name(self) -> str:
        """The class as it was written (`ResNet`), without the module path or mangling."""
        return self.qualname.rpartition(".")[2]

    def walk(self) -> list[ScriptedModuleRecord]:
        found: list[ScriptedModuleRecord] = []
        stack = [self]
        while stack:
            record = stack.pop()
            found.append(record)
            stack.extend(reversed(record.children.values()))
        return found


def read_torchscript(path: Path, limits: Limits = DEFAULT_LIMITS) -> ScriptedModuleRecord:
    """The module tree of a TorchScript archive, or a one-line ReadError."""
    where = str(path)
    with ZipMembers(path, where, limits) as members:
        prefix = _archive_prefix(members.names, where)
        data = members.read(f"{prefix}data.pkl", limits.pickle_bytes)
        # Scripted `__torch__.` classes stay records (`hooks.foreign` names them): their
        # attribute dicts are the module tree.
        storage = member_storage(members, prefix, f"{where}: data.pkl", file=where)
        hooks = TorchHooks(f"{where}: data.pkl", storage, limits)
        root, _ = load_pickle(data, f"{where}: data.pkl", hooks, limits)
        classes = _ClassCode(members, prefix, limits)
        return _Builder(where, classes, limits).module(root, 0)


def _archive_prefix(names: list[str], where: str) -> str:
    """`archive/`: the folder in the zip that holds data.pkl and code/."""
    found = [n[: -len("data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(found) != 1:
        raise ReadError(f"{where} is a TorchScript archive without one data.pkl; not readable")
    return found[0]


class _ClassCode:
    """`__parameters__` and `__buffers__` of the archive's scripted classes, read with `ast`."""

    def __init__(self, members: ZipMembers, prefix: str, limits: Limits) -> None:
        self.members = members
        self.prefix = prefix
        self.limits = limits
        self._files: dict[str, dict[str, tuple[list[str], list[str]]]] = {}

    def lists(self, qualname: str) -> tuple[list[str], list[str]] | None:
        """(parameter names, buffer names) of a class; None when its code cannot say."""
        module, _, name = qualname.rpartition(".")
        member = f"{self.prefix}code/{module.replace('.', '/')}.py"
        if member not in self._files:
            self._files[member] = self._parse(member)
        return self._files[member].get(name)

    def _parse(self, member: str) -> dict[str, tuple[list[str], list[str]]]:
        if member not in self.members.infos:
            return {}
        try:
            text = self.members.read(member, _CODE_BYTES).decode("utf-8")
            tree = ast.parse(text, filename=member)
        except (ReadError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
            return {}  # the names decide instead
        classes: dict[str, tuple[list[str], list[str]]] = {}
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                params = _name_list(node, "__parameters__")
                buffers = _name_list(node, "__buffers__")
                if params is not None and buffers is not None:
                    classes[node.name] = (params, buffers)
        return classes


def _name_list(cls: ast.ClassDef, attribute: str) -> list[str] | None:
    for node in cls.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == attribute
            and isinstance(node.value, ast.List)
        ):
            names = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
            if all(isinstance(n, str) for n in names):
                return [str(n) for n in names]
    return None


class _Builder:
    """Scripted objects of data.pkl into module records; shared modules are walked once per
    place they appear, within the limits on depth and total visits."""

    def __init__(self, where: str, classes: _ClassCode, limits: Limits) -> None:
        self.where = where
        self.classes = classes
        self.limits = limits
        self.visits = 0
        self.on_path: set[int] = set()

    def module(self, value: Any, depth: int) -> ScriptedModuleRecord:
        qualname = _scripted_class(value)
        if qualname is None or not isinstance(value, Call):
            what = value.name if isinstance(value, Call) else type(value).__name__
            raise ReadError(
                f"{self.where}: data.pkl holds a {what}, not a scripted module; not readable"
            )
        if depth > self.limits.depth or id(value) in self.on_path:
            raise ReadError(f"{self.where}: its modules nest too deeply (or in a loop)")
        self.visits += 1
        if self.visits > self.limits.visits:
            raise ReadError(f"{self.where}: more than {self.limits.visits:,} modules to show")
        record = ScriptedModuleRecord(qualname)
        state = value.state
        if not isinstance(state, dict):
            record.own_state = True
            return record
        training = state.get("training", True)
        record.training = training if isinstance(training, bool) else True
        lists = self.classes.lists(qualname)
        self.on_path.add(id(value))
        try:
            for name, item in state.items():
                if not isinstance(name, str):
                    continue
                if isinstance(item, TensorRecord):
                    self._tensor(record, name, item, lists)
                elif _is_module(item):
                    record.children[name] = self.module(item, depth + 1)
        finally:
            self.on_path.discard(id(value))
        if lists is not None:  # the code's order, as state_dict() gives it
            record.parameters = _ordered(record.parameters, lists[0])
            record.buffers = _ordered(record.buffers, lists[1])
        return record

    def _tensor(
        self,
        record: ScriptedModuleRecord,
        name: str,
        tensor: TensorRecord,
        lists: tuple[list[str], list[str]] | None,
    ) -> None:
        if lists is not None:
            if name in lists[0]:
                record.parameters[name] = tensor
            elif name in lists[1]:
                record.buffers[name] = tensor
            # any other tensor is a plain attribute, not in the state_dict
        elif tensor.requires_grad:  # no code to ask: parameters were saved requiring grad
            record.parameters[name] = tensor
        else:
            record.buffers[name] = tensor


def _ordered(tensors: dict[str, TensorRecord], names: list[str]) -> dict[str, TensorRecord]:
    return {name: tensors[name] for name in names if name in tensors}


def _scripted_class(value: Any) -> str | None:
    if isinstance(value, Call) and isinstance(value.func, Global):
        dotted = value.func.dotted
        if dotted.startswith(_SCRIPTED):
            return dotted
    return None


def _is_module(value: Any) -> bool:
    """A scripted object with a `training` flag: a module (other scripted objects are not)."""
    return (
        _scripted_class(value) is not None
        and isinstance(value, Call)
        and (not isinstance(value.state, dict) or "training" in value.state)
    )
