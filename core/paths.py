"""Qualified paths: reading and replacing the module at a path, and writing it as Python."""

from __future__ import annotations

import itertools
import keyword

from torch import nn

from modelbrowse.core.errors import ModelBrowseError


def split_path(path: str) -> tuple[str, str]:
    """'classifier.6' -> ('classifier', '6'); 'fc' -> ('', 'fc')."""
    parent, _, name = path.rpartition(".")
    return parent, name


def get_module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise ModelBrowseError(f"no module at {path!r}") from None


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put `module` at `path`, keeping its place in the parent's order."""
    if not path:
        raise ModelBrowseError("the root cannot be replaced here")
    parent_path, name = split_path(path)
    parent = get_module(model, parent_path)
    if name not in parent._modules:
        raise ModelBrowseError(f"no module at {path!r}")
    parent._modules[name] = module


def code_ref(model: nn.Module, path: str, root: str = "model") -> str:
    """Python for the object at `path`: 'classifier.6.weight' -> 'model.classifier[6].weight'.

    Indexing is used where the container supports it (Sequential, ModuleList, ModuleDict).
    """
    text = root
    current: object = model
    for part in path.split(".") if path else []:
        if isinstance(current, (nn.Sequential, nn.ModuleList)) and _at_its_place(current, part):
            text += f"[{part}]"
        elif isinstance(current, nn.ModuleDict):
            text += f"[{part!r}]"
        elif part.isidentifier() and not keyword.iskeyword(part):
            text += f".{part}"
        else:
            text = f"getattr({text}, {part!r})"
        current = getattr(current, part, None)
    return text


def _at_its_place(container: nn.Module, name: str) -> bool:
    """Whether `container[int(name)]` is the child named `name`. A ModuleList indexes by name,
    a Sequential by place: a child added as `add_module('100', ...)` is not the 101st."""
    keys = container._modules
    if not name.isdigit() or name != str(int(name)) or name not in keys:
        return False
    position = int(name)
    if position >= len(keys):
        return False
    if isinstance(container, nn.ModuleList):
        return True
    return next(itertools.islice(keys, position, None)) == name


def subtree_modules(module: nn.Module) -> list[nn.Module]:
    """`module` and every module below it, each once (as `modules()`, but in no particular
    order): a loop without nested generators, for models of 100,000 modules."""
    found = [module]
    seen = {id(module)}
    stack = [module]
    while stack:
        current = stack.pop()
        for sub in current._modules.values():
            if sub is not None and id(sub) not in seen:
                seen.add(id(sub))
                found.append(sub)
                stack.append(sub)
    return found


def subtree_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters of `module` and everything below it, each once (as `parameters()`, but
    in no particular order)."""
    found: list[nn.Parameter | None] = []
    for current in subtree_modules(module):
        found.extend(current._parameters.values())
    return list({id(p): p for p in found if p is not None}.values())
