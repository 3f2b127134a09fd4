"""`run_probe`: one forward (and optionally backward) pass with hooks on every module that keep
statistics only. Each hook computes its module's output statistics and lets the tensor go, so a
forward-only probe holds at most the model and the activations the forward itself holds (about
two layers' worth) at any moment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from modelbrowse.core.probe.grads import loss_of, take_grads
from modelbrowse.core.probe.result import OutputStats, ProbeCancelled, ProbeError, ProbeResult
from modelbrowse.core.probe.tensor_stats import RELU_FAMILY, channel_dim, tensor_stats

Inputs = Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
Progress = Callable[[int, int], None]


def first_tensor(value: Any) -> torch.Tensor | None:
    """The tensor a module's output stands for: itself, or the first tensor (depth first) of a
    tuple, list or dict (a Hugging Face ModelOutput is a dict: its first field, the logits
    when there is no loss). None when there is none."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def _tensors(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[torch.Tensor]:
    """The tensors among a call's arguments (top level, and one level inside tuples and lists)."""
    found: list[torch.Tensor] = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found


class _Recorder:
    """The hooks' state: statistics by module, the call order, the first NaN/Inf producer."""

    def __init__(self, model: nn.Module, progress: Progress | None, cancel: threading.Event | None):
        self.paths: dict[nn.Module, list[str]] = {}
        for path, module in model.named_modules(remove_duplicate=False):
            self.paths.setdefault(module, []).append(path)
        self.stats: dict[nn.Module, OutputStats] = {}
        self.order: dict[nn.Module, int] = {}
        self.progress, self.cancel = progress, cancel
        self.previous: nn.Module | None = None  # the last module with parameters to finish
        self.first_bad: nn.Module | None = None
        self.first_bad_inputs: tuple[OutputStats, ...] = ()
        self.pending_inputs: dict[nn.Module, tuple[OutputStats, ...]] = {}
        self.done: set[nn.Module] = set()

    def attach(self) -> list[torch.utils.hooks.RemovableHandle]:
        handles = []
        for module in self.paths:
            handles.append(module.register_forward_pre_hook(self.before, with_kwargs=True))
            handles.append(module.register_forward_hook(self.after, with_kwargs=True))
        return handles

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise ProbeCancelled()

    def before(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._check_cancel()
        self.order.setdefault(module, len(self.order))
        # An in-place module (ReLU(inplace=True)) overwrites its input: were it the first to
        # produce NaN, its inputs' statistics must be taken before it runs.
        if self.first_bad is None and getattr(module, "inplace", False) is True:
            order = self.order[module]
            self.pending_inputs[module] = tuple(
                tensor_stats(t, order) for t in _tensors(args, kwargs)
            )

    def after(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> None:
        self._check_cancel()
        pending = self.pending_inputs.pop(module, None)
        tensor = first_tensor(output)
        if tensor is not None:
            self._record(module, tensor, pending, args, kwargs)
        if any(True for _ in module.parameters(recurse=False)):
            self.previous = module
        if module not in self.done:
            self.done.add(module)
            if self.progress is not None:
                self.progress(len(self.done), len(self.paths))

    def _record(
        self,
        module: nn.Module,
        tensor: torch.Tensor,
        pending: tuple[OutputStats, ...] | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        order = self.order.get(module, len(self.order))
        dead_dim = None
        if isinstance(module, RELU_FAMILY):
            dead_dim = channel_dim(tensor.ndim, self.previous)
        stats = tensor_stats(tensor, order, dead_dim)
        if stats.bad and self.first_bad is None:
            self.first_bad = module
            self.first_bad_inputs = (
                pending
                if pending is not None
                else tuple(tensor_stats(t, order) for t in _tensors(args, kwargs))
            )
        kept = self.stats.get(module)
        if kept is None:
            self.stats[module] = stats
            return
        # A shared module: the first call's statistics, unless a later call is the one that
        # produced NaN/Inf (then that call's, so that the mark and the numbers agree).
        chosen = stats if stats.bad and not kept.bad else kept
        self.stats[module] = _with_calls(chosen, kept.calls + 1)

    def outputs(self, model: nn.Module) -> dict[str, OutputStats]:
        """Statistics by path, in tree order, every alias of a shared module included."""
        found: dict[str, OutputStats] = {}
        for path, module in model.named_modules(remove_duplicate=False):
            if module in self.stats:
                found[path] = self.stats[module]
        return found


def _with_calls(stats: OutputStats, calls: int) -> OutputStats:
    from dataclasses import replace

    return replace(stats, calls=calls)


def _check_runnable(model: nn.Module) -> None:
    if isinstance(model, torch.jit.ScriptModule):
        raise ProbeError("the probe hooks a module's Python forward; a TorchScript model has none")
    if type(model).forward is nn.Module.forward:
        raise ProbeError(
            "this model has no forward to run (weights without an architecture: give --arch)"
        )
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ProbeError("the model is on meta (shapes only): the probe needs real values")


def _device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _place(
    inputs: Inputs, device: torch.device
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    if isinstance(inputs, Mapping):
        return [], {name: t.to(device) for name, t in inputs.items()}
    return [t.to(device) for t in inputs], {}


def _describe(args: list[torch.Tensor], kwargs: dict[str, torch.Tensor]) -> str:
    def one(t: torch.Tensor) -> str:
        return f"{','.join(str(d) for d in t.shape)} ({str(t.dtype).removeprefix('torch.')})"

    return "; ".join([one(t) for t in args] + [f"{k}={one(t)}" for k, t in kwargs.items()])


def _failure(exc: Exception, what: str) -> ProbeError:
    while exc.__cause__ is not None and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__
    text = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return ProbeError(
        f"{what}: {type(exc).__name__}: {text}" if text else f"{what}: {type(exc).__name__}"
    )


def run_probe(
    model: nn.Module,
    inputs: Inputs,
    *,
    train: bool = False,
    backward: bool = False,
    target: torch.Tensor | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> ProbeResult:
    """Run `model` once on `inputs` with statistics hooks on every module; with `backward`,
    take a loss (the output's sum, or cross-entropy against `target`) and gradients.

    The model is left as it was: its modules' train/eval modes, its batch norms' running
    statistics (which a train-mode forward updates) and every parameter's `.grad`. Raises
    ProbeCancelled when `cancel` is set (checked in every hook), ProbeError when the forward
    or the loss fails.
    """
    if target is not None and not backward:
        raise ProbeError("a target is for the loss: it goes with a backward pass")
    _check_runnable(model)
    start = time.perf_counter()
    recorder = _Recorder(model, progress, cancel)
    modes = {module: module.training for module in recorder.paths}
    norm_state = _norm_buffers(model) if train else {}
    parameters = [p for p in model.parameters() if p.requires_grad]
    saved_grads = [p.grad for p in parameters] if backward else []
    handles = recorder.attach()
    loss: float | None = None
    loss_kind = ""
    grads: dict[str, Any] = {}
    no_grad: tuple[str, ...] = ()
    try:
        model.train(train)
        device = _device(model)
        args, kwargs = _place(inputs, device)
        described = _describe(args, kwargs)
        if backward:
            for p in parameters:
                p.grad = None
        # Dropout draws from a random state of its own: train mode repeats, and the caller's
        # random state is left as it was.
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), grad_mode(backward):
            _seed(device)
            try:
                output = model(*args, **kwargs)
            except ProbeCancelled:
                raise
            except Exception as exc:
                raise _failure(exc, f"the forward failed for input {described}") from exc
            if backward:
                for handle in handles:
                    handle.remove()  # the backward pass is not the hooks' business
                value, loss_kind = loss_of(first_tensor(output), target)
                del output
                try:
                    torch.autograd.backward(value)
                except Exception as exc:
                    raise _failure(exc, "the backward pass failed") from exc
                loss = float(value.detach())
                del value
                grads, no_grad = take_grads(model)
            else:
                del output
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.training = mode
        _restore_buffers(norm_state)
        if backward:
            for p, grad in zip(parameters, saved_grads, strict=True):
                p.grad = grad
    if progress is not None:
        progress(len(recorder.paths), len(recorder.paths))
    first_bad = None
    if recorder.first_bad is not None:
        first_bad = recorder.paths[recorder.first_bad][0]
    return ProbeResult(
        outputs=recorder.outputs(model),
        grads=grads,
        no_grad=no_grad,
        first_bad=first_bad,
        first_bad_inputs=recorder.first_bad_inputs,
        train=train,
        backward=backward,
        loss=loss,
        seconds=time.perf_counter() - start,
        modules=tuple(
            (path, type(m).__name__) for path, m in model.named_modules(remove_duplicate=False)
        ),
        inputs=described,
        loss_kind=loss_kind,
        containers=frozenset(
            path
            for path, m in model.named_modules(remove_duplicate=False)
            if type(m).forward is nn.Module.forward
        ),
    )


def _seed(device: torch.device) -> None:
    """Seed 0 for the CPU and the model's GPU (only these: the others' states were not saved)."""
    torch.random.default_generator.manual_seed(0)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(0)


def grad_mode(backward: bool) -> AbstractContextManager[Any]:
    """Gradients for a backward pass; none for a forward alone."""
    return nullcontext() if backward else torch.no_grad()


def _norm_buffers(model: nn.Module) -> dict[torch.Tensor, torch.Tensor]:
    """Copies of the buffers a train-mode forward updates (batch norms' running statistics)."""
    saved: dict[torch.Tensor, torch.Tensor] = {}
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            for buffer in module.buffers(recurse=False):
                saved[buffer] = buffer.detach().clone()
    return saved


def _restore_buffers(saved: dict[torch.Tensor, torch.Tensor]) -> None:
    with torch.no_grad():
        for buffer, copy in saved.items():
            buffer.copy_(copy)
