"""What the restricted pickle machine makes: records of globals and calls, never imported.

A global a pickle names is a `Global` (module and name as text), a call it asks for is a `Call`
of the callable and its arguments, with the state BUILD gave it. `PickleHooks` is how a caller
turns the records it understands into its own; `plain_call` makes the plain containers a pickle
names (`collections.OrderedDict()` is a dict) without importing them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError


@dataclass(frozen=True)
class Global:
    """A global the pickle names (`torch._utils._rebuild_tensor_v2`); never imported."""

    module: str
    name: str

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call:
    """`func(*args)` as the pickle asked for it, never called. `state` is what BUILD gave it;
    `items` and `entries` what SETITEMS and APPENDS added (a dict subclass, a list subclass)."""

    func: Any
    args: tuple[Any, ...]
    state: Any = None
    items: dict[Any, Any] = field(default_factory=dict)
    entries: list[Any] = field(default_factory=list)
    kwargs: dict[Any, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.func.dotted if isinstance(self.func, Global) else type(self.func).__name__


@dataclass(frozen=True)
class PersistentId:
    """A persistent id the pickle refers to (a torch storage), left to the caller's hook."""

    pid: Any


@dataclass
class PickleHooks:
    """What a caller makes of calls and persistent ids; by default they stay records."""

    call: Callable[[Call], Any] = lambda record: record
    persistent: Callable[[Any], Any] = PersistentId
    # Every global the pickle names passes here first (to be checked against an allow list).
    name: Callable[[Global], Any] = lambda record: record


# Constructors of plain data a pickle may name: made here, never by importing the name.
_PLAIN: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): dict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "tuple"): tuple,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "bytes"): bytes,
    ("_codecs", "encode"): lambda text, encoding="utf-8": _encode(text, encoding),
    ("builtins", "bytearray"): bytearray,
    ("__builtin__", "bytearray"): bytearray,
}


def plain_call(record: Call) -> Any:
    """A call of a known plain-data constructor done here (`OrderedDict()` -> {}), else the
    record itself."""
    func = record.func
    if isinstance(func, Global) and not record.kwargs:
        make = _PLAIN.get((func.module, func.name))
        if make is not None and all(_is_plain(a) for a in record.args):
            if make in (bytes, bytearray) and any(isinstance(a, int) for a in record.args):
                return record  # bytes(10**12) would allocate what the file only names
            try:
                return make(*record.args)
            except (TypeError, ValueError):
                return record
    return record


def _encode(text: str, encoding: str) -> bytes:
    """Protocols 0-2 write bytes as `_codecs.encode(text, 'latin1')`."""
    if encoding not in ("latin1", "latin-1", "utf-8", "ascii"):
        raise ValueError(encoding)
    return text.encode(encoding)


def _is_plain(value: Any) -> bool:
    return isinstance(value, (list, tuple, dict, set, frozenset, str, bytes, int, float))


def globals_in(value: Any, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """Every global named by the unresolved call records in `value`, in order, each once."""
    found: dict[str, None] = {}
    for item in walk(value, limits):
        if isinstance(item, Call):
            found[item.name] = None
        elif isinstance(item, Global):
            found[item.dotted] = None
    return list(found)


def walk(value: Any, limits: Limits = DEFAULT_LIMITS) -> list[Any]:
    """Every object reachable from `value`, each once (a pickle's memo can share or loop)."""
    seen: set[int] = set()
    order: list[Any] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        order.append(item)
        if len(order) > limits.visits:
            raise ReadError(f"more than {limits.visits:,} objects to walk")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif isinstance(item, Call):
            stack.extend((item.func, *item.args, item.state))
            stack.extend(item.items.values())
            stack.extend(item.entries)
    return order
