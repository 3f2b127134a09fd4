"""Casting a subtree to another floating dtype, with norms and biases kept in float32.

The cast sets each tensor's `.data`, so a parameter stays the same object: ties hold (a tied
embedding and lm_head are cast once), `requires_grad` and references held elsewhere stay.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from modelbrowse.core.edits.base import Edit, EditError, is_module_path, tensor_at
from modelbrowse.core.nodes import quantization_of
from modelbrowse.core.paths import get_module
from modelbrowse.core.tensor_bytes import check_files_hold

DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float32": torch.float32,
}
KEPT_DTYPE = torch.float32
_TORCH_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
)


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer: torch's own, or one named so (LlamaRMSNorm, T5LayerNorm, ...)."""
    return isinstance(module, _TORCH_NORMS) or type(module).__name__.endswith("Norm")


def floating_tensors(model: nn.Module, path: str) -> dict[str, torch.Tensor]:
    """Every floating parameter and buffer at or under `path`, by each name it has there."""
    if not is_module_path(model, path):
        tensor = tensor_at(model, path)
        return {path: tensor} if tensor.is_floating_point() else {}
    found: dict[str, torch.Tensor] = {}
    for sub_path, module in get_module(model, path).named_modules(prefix=path):
        if module.__dict__.get("_quantized"):
            raise EditError(
                f"{sub_path or 'the model'} holds quantized weights: their stored values "
                "cannot be cast"
            )
        for name, tensor in [*module._parameters.items(), *module._buffers.items()]:
            if tensor is not None and tensor.is_floating_point():
                if quantization_of(tensor) is not None:
                    raise EditError(f"{_join(sub_path, name)} is a quantized weight")
                found[_join(sub_path, name)] = tensor
    return found


def default_keep(model: nn.Module, path: str) -> list[str]:
    """What a cast keeps in float32 unless told otherwise: the norm layers under `path` (by
    module path), the biases outside them and the buffers a model computes rather than stores
    (rotary frequencies: in bfloat16 their positions drift), by tensor path."""
    if not is_module_path(model, path):
        return []
    keep: list[str] = []
    for sub_path, module in get_module(model, path).named_modules(prefix=path):
        own = [*module.parameters(), *module.buffers()]
        if is_norm(module) and any(t.is_floating_point() for t in own):
            keep.append(sub_path)
            continue
        bias = module._parameters.get("bias")
        if bias is not None and bias.is_floating_point():
            keep.append(_join(sub_path, "bias"))
        for name in sorted(module._non_persistent_buffers_set):
            buffer = module._buffers.get(name)
            if buffer is not None and buffer.is_floating_point():
                keep.append(_join(sub_path, name))  # computed, not stored: rotary frequencies
    inside = Matcher(keep)  # a bias inside a kept norm is kept by the norm's entry
    return [k for k in keep if not inside.above(k)]


class Matcher:
    """Keep entries against tensor names: a tensor's path, a module above it, or a glob
    (`*.bias`, `*norm*`); checked in the time of a name's depth, whatever the list's length."""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = list(entries)
        self.exact = {e for e in entries if not any(c in e for c in "*?[")}
        self.globs = [e for e in entries if e not in self.exact]

    def __call__(self, name: str) -> bool:
        if name in self.exact or self.above(name):
            return True
        return any(fnmatch.fnmatchcase(name, g) for g in self.globs)

    def above(self, name: str) -> bool:
        """Whether an exact entry names a module above `name`."""
        if name and "" in self.exact:
            return True
        parent = name
        while "." in parent:
            parent = parent.rpartition(".")[0]
            if parent in self.exact:
                return True
        return False


def parse_keep(text: str) -> list[str]:
    """A comma-separated keep list as typed, each entry trimmed, empty ones dropped."""
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


def unmatched(model: nn.Module, path: str, entries: Iterable[str]) -> list[str]:
    """The entries that name no floating tensor under `path` (a typo keeps nothing)."""
    names = list(floating_tensors(model, path))
    found = set(names)
    for name in names:
        while "." in name:
            name = name.rpartition(".")[0]
            found.add(name)
    if names:
        found.add("")
    missing = []
    for entry in entries:
        glob = any(c in entry for c in "*?[")
        if not (fnmatch.filter(names, entry) if glob else entry in found):
            missing.append(entry)
    return missing


def cast_preview(
    model: nn.Module, path: str, dtype: str, keep: list[str]
) -> tuple[str, str | None]:
    """What casting `path` to `dtype` keeping `keep` would do, in a line, and why it cannot
    be applied (an entry that names nothing, nothing to change), or None."""
    from modelbrowse.core.units import human_bytes

    cast = Cast(path, dtype, keep)
    named = floating_tensors(model, path)
    plan = cast.plan(model)
    tensors = {id(t): t for t in named.values()}
    before = sum(t.numel() * t.element_size() for t in tensors.values())
    after = before
    for name, target in plan.items():
        tensor = named[name]
        if id(tensor) in tensors:
            del tensors[id(tensor)]
            after += tensor.numel() * (target.itemsize - tensor.element_size())
    text = f"{cast.cast_count} tensor{'s' if cast.cast_count != 1 else ''} to {dtype}"
    if dtype != "float32":
        text += f" · {cast.kept_count} kept in float32"
    text += f" · {human_bytes(before)} → {human_bytes(after)}"
    missing = unmatched(model, path, keep)
    if missing:
        where = path or "the model"
        return text, f"{missing[0]!r} names no floating tensor in {where}"
    if not plan:
        return text, "nothing changes: every tensor there already has that dtype"
    return text, None


@dataclass
class Cast(Edit):
    """Cast the floating tensors of a subtree to `dtype`; those `keep` names go to float32,
    those `leave` names stay as they are (a write's `--dtype` leaves what casts decided).

    A layer whose weight is cast and whose bias is kept mixes dtypes: such a model runs under
    `torch.autocast`, as mixed-precision training runs it; with `keep` empty it runs in one
    dtype. Undo puts back the original tensors themselves, bit for bit: they are kept while the edit
    is in the history, so a cast holds both copies (float32 to bfloat16: 1.5 times the
    subtree's bytes) until it is dropped from the history.
    """

    path: str
    dtype: str = "bfloat16"
    keep: list[str] = field(default_factory=list)
    leave: list[str] = field(default_factory=list)
    op: ClassVar[str] = "cast"
    cast_count: int = field(default=0, repr=False, compare=False)
    kept_count: int = field(default=0, repr=False, compare=False)
    _saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = field(
        default_factory=list, repr=False, compare=False
    )
    _names: dict[str, torch.dtype] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise EditError(f"cannot cast to {self.dtype!r}: choose {', '.join(DTYPES)}")

    def plan(self, model: nn.Module) -> dict[str, torch.dtype]:
        """Each tensor name under the path whose dtype changes, and to what; a tensor under
        several names is planned under each, the same way (kept if any name is kept)."""
        named = floating_tensors(model, self.path)
        by_id: dict[int, list[str]] = {}
        for name, tensor in named.items():
            by_id.setdefault(id(tensor), []).append(name)
        plan: dict[str, torch.dtype] = {}
        self.cast_count = self.kept_count = 0
        leave, keep = Matcher(self.leave), Matcher(self.keep)
        for names in by_id.values():
            if any(leave(n) for n in names):
                continue
            kept = any(keep(n) for n in names)
            target = KEPT_DTYPE if kept else DTYPES[self.dtype]
            self.kept_count += kept
            self.cast_count += not kept
            if named[names[0]].dtype != target:
                plan.update(dict.fromkeys(names, target))
        return plan

    def apply(self, model: nn.Module) -> None:
        plan = self.plan(model)
        named = {n: tensor_at(model, n) for n in plan}
        check_files_hold(named)  # values are read: a mapped file truncated since is an error
        saved: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        with torch.no_grad():
            for name, target in plan.items():
                tensor = named[name]
                if id(tensor) in saved:
                    continue
                grad = tensor.grad
                saved[id(tensor)] = (tensor, tensor.data, grad)
                tensor.data = tensor.data.to(target)
                if grad is not None:
                    tensor.grad = grad.to(target)
        self._saved = list(saved.values())
        self._names = plan

    def undo(self, model: nn.Module) -> None:
        with torch.no_grad():
            for tensor, data, grad in self._saved:
                tensor.data = data
                if grad is not None:
                    tensor.grad = grad
        self._saved = []

    def describe(self) -> str:
        where = self.path or "the whole model"
        text = f"cast {where} to {self.dtype}"
        if self.keep and self.dtype != "float32":
            text += f", keeping {_entries_text(self.keep)} in float32"
        if self.leave:
            text += f", leaving {_entries_text(self.leave)} as they were"
        return text

    def as_code(self) -> list[str]:
        target = DTYPES[self.dtype]
        kept = sorted(n for n, d in self._names.items() if d == KEPT_DTYPE != target)
        changed = sorted(n for n, d in self._names.items() if d == target)
        if not changed and not kept:
            return ["pass  # every floating tensor there already had its dtype"]
        lines = [f"_kept = {_set_code(kept)}  # in float32"] if kept else []
        lines += [
            f"_cast = {_set_code(changed)}  # to {self.dtype}",
            "for _name, _t in [*model.named_parameters(remove_duplicate=False),",
            "                  *model.named_buffers(remove_duplicate=False)]:",
        ]
        if kept:
            lines += [
                f"    if _name in _kept and _t.dtype != {KEPT_DTYPE}:",
                f"        _t.data = _t.data.to({KEPT_DTYPE})",
            ]
        lines += [
            f"    if _name in _cast and _t.dtype != {target}:",
            f"        _t.data = _t.data.to({target})",
        ]
        return lines

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"op": self.op, "path": self.path, "dtype": self.dtype}
        if self.keep:
            record["keep"] = list(self.keep)
        if self.leave:
            record["leave"] = list(self.leave)
        return record


def write_cast(dtype: str, records: Iterable[dict[str, Any]]) -> Cast:
    """The cast a write with `--dtype` makes: every floating tensor, except those under the
    paths that cast edits (in `records`, the recipe's) already decided."""
    decided = [r["path"] for r in records if r.get("op") == Cast.op]
    return Cast("", dtype, leave=decided)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _entries_text(entries: list[str]) -> str:
    shown = ", ".join(e or "(everything)" for e in entries[:3])
    return shown + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")


def _set_code(names: list[str]) -> str:
    return "{" + ", ".join(repr(n) for n in names) + "}" if names else "set()"
