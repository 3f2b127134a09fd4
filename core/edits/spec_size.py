"""How much a spec would build, known before it is built.

A few torch.nn classes multiply what they build by a count argument: `nn.TransformerEncoder(layer,
10**5)` deep-copies its layer 100,000 times (copies no registration hook sees), `nn.RNN(1, 1,
10**7)` registers 40 million parameters. For those, the spec is built with each count at 1 and
at 2 (on meta, under a budget) and the difference extrapolated to the count asked for, so a spec
past the limits is refused in milliseconds. Every other build runs under `counted`, which stops
it at the same limits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from torch import nn

from modelbrowse.core.sources.build_budget import counted
from modelbrowse.core.sources.meta_build import on_meta
from modelbrowse.core.units import human_bytes

if TYPE_CHECKING:
    from modelbrowse.core.edits.specs import _Call

MAX_SPEC_MODULES = 100_000
"""Modules one spec may create: a 100-layer transformer block stack has a few thousand."""
MAX_SPEC_TENSORS = 200_000
"""Parameters and buffers one spec may create."""

MAX_LAYERS = 10_000
"""Layers one count argument may ask for (`num_layers`)."""
MAX_RNN_LAYERS = 1_000
"""An RNN registers each layer's weights by looking its name up in a list of all of them: its
build time grows with the square of `num_layers` (3,000 layers: 2 s)."""

# Count arguments by class: (keyword, position, default).
_REPEATS: dict[type[nn.Module], tuple[tuple[str, int, int], ...]] = {
    nn.TransformerEncoder: (("num_layers", 1, 1),),
    nn.TransformerDecoder: (("num_layers", 1, 1),),
    nn.Transformer: (("num_encoder_layers", 2, 6), ("num_decoder_layers", 3, 6)),
    nn.RNN: (("num_layers", 2, 1),),
    nn.LSTM: (("num_layers", 2, 1),),
    nn.GRU: (("num_layers", 2, 1),),
}


@dataclasses.dataclass(frozen=True)
class Footprint:
    modules: int
    tensors: int
    nbytes: int

    def __sub__(self, other: Footprint) -> Footprint:
        return Footprint(
            self.modules - other.modules, self.tensors - other.tensors, self.nbytes - other.nbytes
        )

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(
            self.modules + other.modules, self.tensors + other.tensors, self.nbytes + other.nbytes
        )

    def times(self, count: int) -> Footprint:
        return Footprint(self.modules * count, self.tensors * count, self.nbytes * count)


def footprint_of(module: nn.Module) -> Footprint:
    tensors = [*module.parameters(), *module.buffers()]
    return Footprint(
        sum(1 for _ in module.modules()),
        len(tensors),
        sum(t.numel() * t.element_size() for t in tensors),
    )


def refusal(what: str, size: Footprint, max_bytes: int) -> str | None:
    """The one-line refusal for a footprint past the limits, or None."""
    if size.modules > MAX_SPEC_MODULES:
        return f"{what} would create {size.modules:,} modules; at most {MAX_SPEC_MODULES:,}"
    if size.tensors > MAX_SPEC_TENSORS:
        return f"{what} would create {size.tensors:,} tensors; at most {MAX_SPEC_TENSORS:,}"
    if size.nbytes > max_bytes:
        return (
            f"{what} would take {human_bytes(size.nbytes)}, more than the "
            f"{human_bytes(max_bytes)} limit"
        )
    return None


def nested_calls(call: _Call) -> Iterator[_Call]:
    """The constructor calls among a call's arguments (inside tuples and lists too)."""
    stack: list[Any] = [*call.args, *(value for _, value in call.kwargs)]
    while stack:
        value = stack.pop()
        if isinstance(value, (tuple, list)):
            stack.extend(value)
        elif hasattr(value, "cls") and hasattr(value, "kwargs"):
            yield value


def check_repeats(
    call: _Call,
    build: Callable[[_Call], nn.Module],
    what: str,
    max_bytes: int,
) -> str | None:
    """A refusal for the first call (innermost first) whose counts make it too large, or None."""
    for inner in nested_calls(call):
        problem = check_repeats(inner, build, what, max_bytes)
        if problem is not None:
            return problem
    counts = _REPEATS.get(call.cls, ())
    asked = [_count(call, keyword, position, default) for keyword, position, default in counts]
    if not any(isinstance(n, int) and n > 2 for n in asked):
        return None
    most = MAX_RNN_LAYERS if issubclass(call.cls, nn.RNNBase) else MAX_LAYERS
    for n in asked:
        if isinstance(n, int) and n > most:
            return f"{what} would create {n:,} layers; at most {most:,}"

    def measure(values: list[int]) -> Footprint:
        changed = call
        for (keyword, position, _), value in zip(counts, values, strict=True):
            changed = _with_count(changed, keyword, position, value)
        with on_meta(), counted(what, MAX_SPEC_MODULES, MAX_SPEC_TENSORS):
            return footprint_of(build(changed))

    ones = [1] * len(counts)
    base = measure(ones)
    total = base
    for at, n in enumerate(asked):
        if isinstance(n, int) and n > 1:
            step = measure([2 if i == at else 1 for i in range(len(counts))]) - base
            total = total + step.times(n - 1)
    return refusal(what, total, max_bytes)


def _count(call: _Call, keyword: str, position: int, default: int) -> Any:
    for name, value in call.kwargs:
        if name == keyword:
            return value
    return call.args[position] if len(call.args) > position else default


def _with_count(call: _Call, keyword: str, position: int, value: int) -> _Call:
    if any(name == keyword for name, _ in call.kwargs):
        kwargs = tuple((n, value if n == keyword else v) for n, v in call.kwargs)
        return dataclasses.replace(call, kwargs=kwargs)
    if len(call.args) > position:
        args = (*call.args[:position], value, *call.args[position + 1 :])
        return dataclasses.replace(call, args=args)
    return dataclasses.replace(call, kwargs=(*call.kwargs, (keyword, value)))
