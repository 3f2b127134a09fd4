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
    # "reset_parameters", "reset_running_stats", "padding_row" or a scheme name
    action: str
    row: int = 0  # the padding row an Embedding keeps at zero

    def run(self, model: nn.Module) -> None:
        if self.action in (RESET_PARAMETERS, "reset_running_stats"):
            getattr(get_module(model, self.path), self.action)()
        elif self.action == "padding_row":
            nn.init.zeros_(tensor_at(model, self.path)[self.row])
        else:
            SCHEMES[self.action].run(tensor_at(model, self.path))

    def code(self, model: nn.Module) -> str:
        ref = code_ref(model, self.path)
        if self.action in (RESET_PARAMETERS, "reset_running_stats"):
            return f"{ref}.{self.action}()"
        if self.action == "padding_row":
            return f"nn.init.zeros_({ref}[{self.row}])"
        return SCHEMES[self.action].code(ref)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def init_steps(model: nn.Module, path: str, scheme: str) -> tuple[list[_InitStep], list[str]]:
    """The calls a re-initialisation makes, in order, and the parameters it leaves as they are
    (those of modules without reset_parameters(), and any that are not floating point)."""
    if scheme != RESET_PARAMETERS and scheme not in SCHEMES:
        raise EditError(f"unknown scheme {scheme!r} (choose from {', '.join(SCHEME_NAMES)})")
    if not is_module_path(model, path):
        return _tensor_steps(model, path, scheme), []
    steps: list[_InitStep] = []
    skipped: list[str] = []
    for sub_path, module in get_module(model, path).named_modules():
        full = _join(path, sub_path)
        own = [(n, p) for n, p in module._parameters.items() if p is not None]
        if scheme == RESET_PARAMETERS:
            if callable(getattr(module, RESET_PARAMETERS, None)):
                steps.append(_InitStep(full, RESET_PARAMETERS))
            else:
                skipped += [_join(full, n) for n, _ in own]
            continue
        done = _layer_steps(module, full, scheme, steps)
        for name, param in own:
            if name in done:
                continue
            if not param.is_floating_point():
                skipped.append(_join(full, name))
            elif param.dim() >= 2 or not SCHEMES[scheme].needs_matrix:
                steps.append(_InitStep(_join(full, name), scheme))
            else:  # a vector or a scalar under a scheme with fans: as a layer's bias
                steps.append(_InitStep(_join(full, name), "zeros"))
    if not steps:
        where = path or "the model"
        if skipped:
            raise EditError(
                f"nothing in {where} has reset_parameters() for {', '.join(skipped[:3])}"
                f"{' …' if len(skipped) > 3 else ''}: choose a scheme (kaiming_uniform, …)"
            )
        raise EditError(f"nothing to re-initialise in {where}")
    return steps, skipped


def _tensor_steps(model: nn.Module, path: str, scheme: str) -> list[_InitStep]:
    tensor = tensor_at(model, path)
    if scheme == RESET_PARAMETERS:
        raise EditError("reset_parameters applies to modules: choose a scheme for a tensor")
    if not tensor.is_floating_point() and scheme not in ("zeros", "ones"):
        raise EditError(f"{scheme} needs a floating-point tensor; {path} is {tensor.dtype}")
    if SCHEMES[scheme].needs_matrix and tensor.dim() < 2:
        raise EditError(
            f"{scheme} needs a tensor of 2 or more dimensions; {path} has {tensor.dim()}"
        )
    steps = [_InitStep(path, scheme)]
    owner_path, _, name = path.rpartition(".")
    owner = get_module(model, owner_path)
    row = getattr(owner, "padding_idx", None)
    if name == "weight" and isinstance(owner, _WEIGHTED) and isinstance(row, int):
        steps.append(_InitStep(path, "padding_row", row))
    return steps


def _layer_steps(module: nn.Module, path: str, scheme: str, steps: list[_InitStep]) -> set[str]:
    """The steps for a layer torch knows (weight by the scheme, bias zeros; a norm's weight
    ones; an embedding's padding row kept zero); the names of the parameters they cover."""
    weight = module._parameters.get("weight")
    found: list[tuple[str, str]] = []
    if isinstance(module, _WEIGHTED) and weight is not None and weight.is_floating_point():
        found = [("weight", scheme), ("bias", "zeros")]
    elif isinstance(module, _NORMS):
        found = [("weight", "ones"), ("bias", "zeros")]
    done: set[str] = set()
    for name, action in found:
        if module._parameters.get(name) is not None:
            steps.append(_InitStep(_join(path, name), action))
            done.add(name)
    row = getattr(module, "padding_idx", None)
    if "weight" in done and isinstance(module, _WEIGHTED) and isinstance(row, int):
        # nn.Embedding keeps its padding row zero, as its own reset_parameters() does
        steps.append(_InitStep(_join(path, "weight"), "padding_row", row))
    if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
        steps.append(_InitStep(path, "reset_running_stats"))
    return done


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
        text = (
            f"re-initialise {self.path or 'the whole model'} with {self.scheme} (seed {self.seed})"
        )
        if self.skipped:  # known once applied
            why = "no reset_parameters()" if self.scheme == RESET_PARAMETERS else "not floating"
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            text += f"; left as they were ({why}): {', '.join(self.skipped[:3])}{more}"
        return text

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
