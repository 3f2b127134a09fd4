"""A budget on what a build creates: modules and tensors counted as they are registered.

torch calls global registration hooks for every submodule, parameter and buffer a constructor
registers; a build run inside `counted` stops with a BuildLimitError past its budget, or when
its `cancelled` says so, instead of running on for minutes. Only the thread that opened the
budget is counted: a build elsewhere (loading, another worker) is left alone.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from torch.nn.modules import module as module_hooks

from modelbrowse.core.errors import SourceError


class BuildLimitError(SourceError):
    """A build that would create more modules or tensors than its budget allows."""


class BuildCancelled(BuildLimitError):
    """A build whose result is no longer wanted (escape in the app)."""


class _Counter:
    def __init__(
        self, what: str, max_modules: int, max_tensors: int, cancelled: Callable[[], bool]
    ) -> None:
        self.what, self.max_modules, self.max_tensors = what, max_modules, max_tensors
        self.cancelled = cancelled
        self.modules = 1  # the root is never registered as anyone's child
        self.tensors = 0

    def module(self) -> None:
        self.modules += 1
        if self.modules > self.max_modules:
            raise BuildLimitError(
                f"{self.what} would create more than {self.max_modules:,} modules"
            )
        self._poll()

    def tensor(self) -> None:
        self.tensors += 1
        if self.tensors > self.max_tensors:
            raise BuildLimitError(
                f"{self.what} would create more than {self.max_tensors:,} tensors"
            )
        self._poll()

    def _poll(self) -> None:
        if (self.modules + self.tensors) % 64 == 0 and self.cancelled():
            raise BuildCancelled(f"{self.what}: cancelled")


_local = threading.local()
_installed = threading.Lock()
_hooks: list[Any] = []


def _counter() -> _Counter | None:
    stack: list[_Counter] = getattr(_local, "stack", [])
    return stack[-1] if stack else None


def _on_module(*_: Any) -> None:
    counter = _counter()
    if counter is not None:
        counter.module()


def _on_tensor(*_: Any) -> None:
    counter = _counter()
    if counter is not None:
        counter.tensor()


def _install() -> None:
    with _installed:
        if not _hooks:
            _hooks.append(module_hooks.register_module_module_registration_hook(_on_module))
            _hooks.append(module_hooks.register_module_parameter_registration_hook(_on_tensor))
            _hooks.append(module_hooks.register_module_buffer_registration_hook(_on_tensor))


def _cancel_flag() -> Callable[[], bool]:
    flag: Callable[[], bool] | None = getattr(_local, "cancelled", None)
    return flag if flag is not None else _never


def _never() -> bool:
    return False


@contextlib.contextmanager
def counted(what: str, max_modules: int, max_tensors: int) -> Iterator[None]:
    """Count what is built in this thread inside the block; past the budget (or once the
    thread's `cancellable` flag is set) the build raises BuildLimitError."""
    _install()
    stack: list[_Counter] = getattr(_local, "stack", None) or []
    _local.stack = stack
    stack.append(_Counter(what, max_modules, max_tensors, _cancel_flag()))
    try:
        yield
    finally:
        stack.pop()


@contextlib.contextmanager
def cancellable(cancelled: Callable[[], bool]) -> Iterator[None]:
    """Builds counted in this thread inside the block stop once `cancelled()` is true."""
    before = getattr(_local, "cancelled", None)
    _local.cancelled = cancelled
    try:
        yield
    finally:
        _local.cancelled = before


def check_cancelled(what: str) -> None:
    """Raise BuildCancelled when this thread's build is no longer wanted."""
    if _cancel_flag()():
        raise BuildCancelled(f"{what}: cancelled")


# --- a config's structure ------------------------------------------------------------------

MAX_CONFIG_LAYERS = 1_000
"""Layers a config may ask for in one field (the deepest published models have a few hundred)."""
MAX_CONFIG_EXPERTS = 10_000
"""Experts a config may ask for in one field (published mixtures have at most a few hundred)."""
MAX_CONFIG_MODULES = 250_000
"""Modules a config's build may create (a 671B mixture of experts has about 60,000)."""
MAX_CONFIG_TENSORS = 1_000_000
"""Parameters and buffers a config's build may create."""

_LAYER_FIELD = re.compile(
    r"^(num_|n_)?(hidden_|encoder_|decoder_)?(layers?|blocks)$|^num_(encoder|decoder)_layers$"
)
_EXPERT_FIELD = re.compile(r"^(num_|n_)(local_|routed_|shared_)?experts$")


def config_count_problem(config: dict[str, Any], name: str, depth: int = 0) -> str | None:
    """A refusal for the first layer- or expert-count field of a config (nested configs too)
    past its limit, or None: checked before anything is built."""
    for key, value in config.items():
        if isinstance(value, dict) and depth < 8:
            problem = config_count_problem(value, name, depth + 1)
            if problem is not None:
                return problem
        if not isinstance(value, int) or isinstance(value, bool) or not isinstance(key, str):
            continue
        if _LAYER_FIELD.match(key):
            most, what = MAX_CONFIG_LAYERS, "layers"
        elif _EXPERT_FIELD.match(key):
            most, what = MAX_CONFIG_EXPERTS, "experts"
        else:
            continue
        if value > most:
            return f"{name}: {key} is {value:,}; at most {most:,} {what}"
    return None
