"""A stand-in for `modelbrowse.core.probe` with its agreed API, for the app's tests where
the package itself is not there yet: `install()` puts it in its place only then."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbrowse.core.errors import ModelBrowseError


@dataclass(frozen=True)
class OutputStats:
    shape: tuple[int, ...]
    dtype: str
    order: int
    mean: float
    std: float
    absmax: float
    zeros: float
    dead: float | None
    nan: int
    inf: int
    histogram: tuple[int, ...]
    low: float
    high: float


@dataclass(frozen=True)
class GradStats:
    norm: float
    ratio: float


@dataclass(frozen=True)
class ProbeResult:
    outputs: dict[str, OutputStats]
    grads: dict[str, GradStats]
    no_grad: tuple[str, ...]
    first_bad: str | None
    first_bad_inputs: tuple[OutputStats, ...]
    train: bool
    backward: bool
    loss: float | None
    seconds: float


class ProbeCancelled(Exception):
    pass


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _stats(tensor: torch.Tensor, order: int, relu: bool) -> OutputStats:
    t = tensor.detach().float()
    finite = t[torch.isfinite(t)]
    dead = None
    if relu and t.dim() >= 2:
        dead = float((t.transpose(0, 1).reshape(t.shape[1], -1) > 0).any(1).logical_not().float().mean())
    low = float(finite.min()) if finite.numel() else 0.0
    high = float(finite.max()) if finite.numel() else 0.0
    hist = torch.histc(finite, 32, low, high) if finite.numel() and high > low else None
    return OutputStats(
        shape=tuple(tensor.shape),
        dtype=str(tensor.dtype).removeprefix("torch."),
        order=order,
        mean=float(finite.mean()) if finite.numel() else float("nan"),
        std=float(finite.std()) if finite.numel() > 1 else 0.0,
        absmax=float(finite.abs().max()) if finite.numel() else 0.0,
        zeros=float((t == 0).float().mean()) if t.numel() else 0.0,
        dead=dead,
        nan=int(torch.isnan(t).sum()),
        inf=int(torch.isinf(t).sum()),
        histogram=tuple(int(c) for c in hist) if hist is not None else (),
        low=low,
        high=high,
    )


def run_probe(
    model: nn.Module,
    inputs: Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    *,
    train: bool = False,
    backward: bool = False,
    target: torch.Tensor | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ProbeResult:
    start = time.monotonic()
    modules = list(model.named_modules())
    outputs: dict[str, OutputStats] = {}
    inputs_of: dict[str, tuple[OutputStats, ...]] = {}
    handles = []

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if cancel is not None and cancel.is_set():
                raise ProbeCancelled
            tensor = _first_tensor(out)
            if tensor is None or name in outputs:
                return
            relu = isinstance(module, (nn.ReLU, nn.ReLU6, nn.LeakyReLU))
            outputs[name] = _stats(tensor, len(outputs), relu)
            inputs_of[name] = tuple(
                _stats(a, -1, False) for a in args if isinstance(a, torch.Tensor)
            )
            if progress is not None:
                progress(len(outputs), len(modules))

        return hook

    for name, module in modules:
        handles.append(module.register_forward_hook(hook_for(name)))
    was_training = model.training
    model.train(train)
    loss = None
    try:
        with torch.set_grad_enabled(backward):
            out = model(**inputs) if isinstance(inputs, Mapping) else model(*inputs)
            if backward:
                value = _first_tensor(out)
                assert value is not None
                loss_tensor = value.float().sum()
                loss_tensor.backward()
                loss = float(loss_tensor.detach())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    grads: dict[str, GradStats] = {}
    no_grad: list[str] = []
    if backward:
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            if param.grad is None:
                no_grad.append(name)
                continue
            norm = float(param.grad.norm())
            grads[name] = GradStats(norm, norm / max(float(param.detach().norm()), 1e-12))
            param.grad = None
    bad = [p for p, s in sorted(outputs.items(), key=lambda i: i[1].order) if s.nan or s.inf]
    first = bad[0] if bad else None
    return ProbeResult(
        outputs,
        grads,
        tuple(no_grad),
        first,
        inputs_of.get(first, ()) if first is not None else (),
        train,
        backward,
        loss,
        time.monotonic() - start,
    )


def probe_inputs(
    model: nn.Module,
    example: Any,
    input_file: Path | None,
    weights: str | None,
    *,
    seed: int = 0,
) -> list[torch.Tensor]:
    if input_file is not None:
        raise ModelBrowseError(f"{input_file}: input files are not read by this stand-in")
    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for shape, dtype in zip(example.shapes, example.dtypes, strict=True):
        if dtype in ("int64", "long"):
            tensors.append(torch.randint(0, 10, shape, generator=generator))
        else:
            tensors.append(torch.randn(shape, generator=generator))
    return tensors


def install() -> None:
    """Put the stand-in at `modelbrowse.core.probe` unless the real package is there."""
    if "modelbrowse.core.probe" in sys.modules:
        return
    if importlib.util.find_spec("modelbrowse.core.probe") is not None:
        return
    module = types.ModuleType("modelbrowse.core.probe")
    for name in (
        "OutputStats",
        "GradStats",
        "ProbeResult",
        "ProbeCancelled",
        "run_probe",
        "probe_inputs",
    ):
        setattr(module, name, globals()[name])
    sys.modules["modelbrowse.core.probe"] = module
