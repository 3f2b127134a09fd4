"""Freezing: `requires_grad` set on a subtree's parameters, and optionally BatchNorm statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from modelbrowse.core.edits.base import Edit, EditError, is_module_path, tensor_at
from modelbrowse.core.norm_stats import (
    freeze_code,
    freeze_stats,
    release_code,
    release_stats,
    stats_frozen,
    tracking_batch_norms,
)
from modelbrowse.core.paths import code_ref, get_module, subtree_parameters

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex


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
