"""Building a model on the `meta` device, without running its weight initialisation.

Under `torch.device("meta")` every `torch.nn.init` call still runs, through Python
decompositions, on tensors that have no values: for a model of 100,000 small modules that is
most of the build (24 s of 34 here). The in-place initialisers of `torch.nn.init` return a meta
tensor untouched instead, as Hugging Face's `no_init_weights` does for its models. Real tensors
(a builder computing on them, another thread initialising weights) are initialised as before.
That, and pausing the cyclic collector, builds that model in 8 s instead of 24.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.nn import init

# Every public in-place initialiser of torch.nn.init (the ones a module's reset_parameters calls).
INITIALISERS = (
    "constant_", "dirac_", "eye_", "kaiming_normal_", "kaiming_uniform_", "normal_", "ones_",
    "orthogonal_", "sparse_", "trunc_normal_", "uniform_", "xavier_normal_", "xavier_uniform_",
    "zeros_",
)  # fmt: skip

_lock = threading.Lock()
_depth = 0


def _skipping_meta(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def initialise(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if isinstance(tensor, torch.Tensor) and tensor.is_meta:
            return tensor
        return original(tensor, *args, **kwargs)

    initialise.__wrapped_original__ = original  # type: ignore[attr-defined]
    return initialise


@contextlib.contextmanager
def skip_init_on_meta() -> Iterator[None]:
    """`torch.nn.init`'s initialisers leave meta tensors alone inside the block (nestable)."""
    global _depth
    with _lock:
        if _depth == 0:
            for name in INITIALISERS:
                original = getattr(init, name, None)
                if original is not None:
                    setattr(init, name, _skipping_meta(original))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for name in INITIALISERS:
                    patched = getattr(init, name, None)
                    original = getattr(patched, "__wrapped_original__", None)
                    if original is not None:
                        setattr(init, name, original)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block: a build allocates objects that all live
    on, and every collection on the way walks all of them (a fifth of a 100k-module build)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """`torch.device("meta")`, with the initialisers skipped and the collector paused."""
    with torch.device("meta"), skip_init_on_meta(), gc_paused():
        yield
