"""Edits that act on a checkpoint's keys rather than on modules (no architecture needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from modelbrowse.core.edits.base import Edit, EditError
from modelbrowse.core.paths import get_module, split_path
from modelbrowse.core.sources.weights_tree import remove_quantized, restore_quantized


@dataclass
class DeleteKeys(Edit):
    """Drop a tensor, or every tensor under a prefix, from the state_dict."""

    path: str
    op: ClassVar[str] = "delete_keys"
    _removed: tuple[str, int, Any] | None = field(default=None, repr=False)

    @property
    def changes_structure(self) -> bool:
        return True

    def apply(self, model: nn.Module) -> None:
        if not self.path:
            raise EditError("the root cannot be deleted")
        parent_path, name = split_path(self.path)
        parent = get_module(model, parent_path)
        quantized = parent.__dict__.get("_quantized")
        if quantized and name in quantized:
            self._removed = ("_quantized", 0, remove_quantized(parent, name))
            return
        for where in ("_modules", "_parameters", "_buffers"):
            entries: dict[str, Any] = getattr(parent, where)
            if name in entries:
                position = list(entries).index(name)
                self._removed = (where, position, entries.pop(name))
                return
        raise EditError(f"no key or prefix {self.path!r}")

    def undo(self, model: nn.Module) -> None:
        assert self._removed is not None
        where, position, value = self._removed
        parent_path, name = split_path(self.path)
        if where == "_quantized":
            restore_quantized(get_module(model, parent_path), value)
            return
        entries: dict[str, Any] = getattr(get_module(model, parent_path), where)
        items = list(entries.items())
        items.insert(position, (name, value))
        entries.clear()
        entries.update(items)

    def describe(self) -> str:
        return f"delete the keys {self.path}, {self.path}.*"

    def as_code(self) -> list[str]:
        prefix = self.path
        if self._removed is not None and self._removed[0] == "_quantized":
            keys = sorted(self._removed[2].keys)
            return [f"state_dict = {{k: v for k, v in state_dict.items() if k not in {keys!r}}}"]
        return [
            "state_dict = {k: v for k, v in state_dict.items() "
            f"if k != {prefix!r} and not k.startswith({prefix + '.'!r})}}"
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "path": self.path}
