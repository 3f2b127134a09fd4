"""A model's parts by dotted path, with the types a type checker can follow.

`model.classifier[6].weight` is typed `Tensor | Module` by torch (`Module.__getattr__`), so the
tests reach parts through `get_submodule`, `get_parameter` and `get_buffer`, and through
`submodule` where they need the part's own class.
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn

M = TypeVar("M", bound=nn.Module)


def submodule(model: nn.Module, path: str, kind: type[M]) -> M:
    """The module at `path`, checked to be a `kind`."""
    module = model.get_submodule(path)
    assert isinstance(module, kind), f"{path} is a {type(module).__name__}, not a {kind.__name__}"
    return module
