"""Re-initialising a module or tensor: the schemes, and the edit that runs one with a seed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from modelbrowse.core.edits.base import (
    Edit,
    EditError,
    is_module_path,
    new_seed,
    seeded,
    tensor_at,
)
from modelbrowse.core.paths import code_ref, get_module
from modelbrowse.core.tensor_bytes import check_files_hold


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
        from modelbrowse.core.sources.weights_tree import quantized_at

        quantized = quantized_at(model, self.path) if self.path else None
        if quantized is not None:
            raise EditError(
                f"{self.path} is a quantized weight ({quantized.layout.quantization.scheme}): "
                "its stored values cannot be re-initialised"
            )
        steps, self.skipped = init_steps(model, self.path, self.scheme)
        named = _tensors_touched(model, self.path)
        check_files_hold(named)  # the old values are kept for undo: read from a mapped file
        tensors = list(named.values())
        self._saved = [(t, t.detach().clone()) for t in tensors]
        self._code = [f"torch.manual_seed({self.seed})", *(s.code(model) for s in steps)]
        devices = [t.device for t in tensors if t.device.type == "cuda"]
        with seeded(self.seed, devices), torch.no_grad():
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


def _tensors_touched(model: nn.Module, path: str) -> dict[str, torch.Tensor]:
    if not is_module_path(model, path):
        return {path: tensor_at(model, path)}
    module = get_module(model, path)
    named = [*module.named_parameters(prefix=path), *module.named_buffers(prefix=path)]
    return dict(named)
