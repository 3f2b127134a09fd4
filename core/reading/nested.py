"""Nested dicts as dotted keys, walked without recursion and within a budget.

A pickle can share one dict under many keys (a DAG whose paths double with each level: 2**60
keys from 2 KB), contain itself, or nest 100,000 levels deep. The walk refuses each in one line:
every entry visited counts against `Limits.visits`, entries reached again through a shared dict
against a much smaller budget (real checkpoints share none), a dict inside itself is a cycle,
and nesting is bounded by `Limits.depth`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError


def flatten(
    mapping: Mapping[Any, Any],
    where: str,
    limits: Limits = DEFAULT_LIMITS,
    descend: Callable[[Any], bool] | None = None,
) -> Iterator[tuple[str, Any]]:
    """`{'a': {'b': t}}` -> ('a.b', t), in order; a non-empty Mapping is walked into unless
    `descend` says otherwise."""
    visits = 0
    repeated = 0
    repeat_budget = max(limits.visits // max(limits.depth, 1), 1)
    expanded: set[int] = {id(mapping)}
    on_path: set[int] = {id(mapping)}
    stack: list[tuple[Iterator[tuple[Any, Any]], str, int, bool]] = [
        (iter(mapping.items()), "", id(mapping), False)
    ]
    while stack:
        items, prefix, node, shared = stack[-1]
        for key, value in items:
            visits += 1
            if shared:
                repeated += 1
            if repeated > repeat_budget:
                raise ReadError(
                    f"{where} shares one dict under many keys: it expands to more than "
                    f"{repeat_budget:,} entries through shared dicts; refused"
                )
            if visits > limits.visits:
                raise ReadError(f"{where} has more than {limits.visits:,} nested entries; refused")
            dotted = f"{prefix}{key}"
            if isinstance(value, Mapping) and value and (descend is None or descend(value)):
                if id(value) in on_path:
                    raise ReadError(f"{where}: the entry {_short(dotted)} contains itself")
                if len(stack) >= limits.depth:
                    raise ReadError(
                        f"{where} nests dicts more than {limits.depth} levels deep; refused"
                    )
                again = shared or id(value) in expanded
                expanded.add(id(value))
                on_path.add(id(value))
                stack.append((iter(value.items()), dotted + ".", id(value), again))
                break
            yield dotted, value
        else:
            stack.pop()
            on_path.discard(node)


def lookup(mapping: Mapping[Any, Any], dotted: str) -> Any:
    """The value at `a.b.c` in nested mappings, or None."""
    value: Any = mapping
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _short(key: str) -> str:
    from modelbrowse.core.units import printable

    return repr(printable(key, 80))
