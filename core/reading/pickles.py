"""A restricted pickle machine: it decodes every opcode and never imports or calls anything.

A pickle is a program for a stack machine; `pickle.load` imports the globals it names and calls
them. This machine runs the same program over plain data only: a global is a `Global` record
(module and name as text), a call is a `Call` record of the callable and its arguments, and
object state is kept on the record. A caller turns the records it understands into its own
(`torch._utils._rebuild_tensor_v2(...)` into a tensor record) through `PickleHooks`, and anything
else stays an inert record it can name in an error. Sizes are checked against the bytes left
before anything is allocated, and the number of objects created is bounded.
"""

from __future__ import annotations

import struct
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


class _Mark:
    """The MARK opcode's place on the stack."""


_MARK = _Mark()

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


def load_pickle(
    data: bytes | memoryview,
    where: str,
    hooks: PickleHooks | None = None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    start: int = 0,
) -> tuple[Any, int]:
    """Run the pickle at `data[start:]`; the value it builds and the offset after its STOP."""
    machine = _Machine(memoryview(data), where, hooks or PickleHooks(), limits, start)
    try:
        return machine.run(), machine.pos
    except ReadError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, struct.error) as exc:
        raise ReadError(
            f"{where} is a damaged pickle ({type(exc).__name__} at byte {machine.pos})"
        ) from None
    except RecursionError:
        raise ReadError(f"{where} is nested too deeply") from None
    except MemoryError:
        raise ReadError(f"{where} needs more memory than it may take") from None


class _Machine:
    def __init__(
        self, data: memoryview, where: str, hooks: PickleHooks, limits: Limits, start: int
    ) -> None:
        self.data = data
        self.where = where
        self.hooks = hooks
        self.limits = limits
        self.pos = start
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.objects = 0

    # --- reading arguments, each length checked against what is left ---

    def _fail(self, why: str) -> ReadError:
        return ReadError(f"{self.where} is a damaged pickle: {why} at byte {self.pos}")

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self._fail(f"it declares {n:,} bytes but ends first")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _unpack(self, fmt: struct.Struct) -> Any:
        value = fmt.unpack_from(self.data, self.pos)[0]
        self.pos += fmt.size
        return value

    def _line(self) -> bytes:
        end = bytes(self.data[self.pos : self.pos + 65536]).find(b"\n")
        if end < 0:
            raise self._fail("a text argument has no end")
        line = bytes(self.data[self.pos : self.pos + end])
        self.pos += end + 1
        return line

    def _count(self, n: int = 1) -> None:
        self.objects += n
        if self.objects > self.limits.pickle_objects:
            raise ReadError(
                f"{self.where} creates more than {self.limits.pickle_objects:,} objects; "
                "refused before it takes the memory"
            )

    def _pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self._fail("an opcode needs a MARK that is not there")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def _int(self, raw: bytes) -> int:
        if len(raw) * 2.5 > self.limits.int_digits:
            raise self._fail("an integer too long to be a size or count")
        return int.from_bytes(raw, "little", signed=True)

    def _text_int(self, line: bytes) -> int:
        text = line.decode("ascii").rstrip("L")
        if len(text) > self.limits.int_digits:
            raise self._fail("an integer too long to be a size or count")
        if text in ("00", "01"):  # protocol 0 writes booleans as INT 00 / 01
            return int(text)
        return int(text)

    # --- the machine ---

    def run(self) -> Any:
        data = self.data
        stack = self.stack
        size = len(data)
        while True:
            if self.pos >= size:
                raise self._fail("it ends before its STOP opcode")
            op = data[self.pos]
            self.pos += 1
            handler = _HANDLERS.get(op)
            if handler is None:
                raise self._fail(f"opcode 0x{op:02x} is not allowed")
            if handler is _stop:
                if len(stack) != 1 or self.marks:
                    raise self._fail("its stack is not one value at STOP")
                return stack.pop()
            handler(self)


def _stop(m: _Machine) -> None:  # handled in the loop
    raise AssertionError


_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct(">d")


def _push(m: _Machine, value: Any) -> None:
    m.stack.append(value)


def _proto(m: _Machine) -> None:
    if m._unpack(_U8) > 5:
        raise m._fail("a pickle protocol newer than 5")


def _frame(m: _Machine) -> None:
    length = m._unpack(_U64)
    if m.pos + length > len(m.data):
        raise m._fail(f"a frame of {length:,} bytes runs past the end")


def _mark(m: _Machine) -> None:
    m.marks.append(len(m.stack))


def _pop(m: _Machine) -> None:
    if m.marks and m.marks[-1] == len(m.stack):
        m.marks.pop()
    else:
        m.stack.pop()


def _pop_mark_op(m: _Machine) -> None:
    m._pop_mark()


def _dup(m: _Machine) -> None:
    m.stack.append(m.stack[-1])


def _int_text(m: _Machine) -> None:
    line = m._line()
    if line == b"00":
        _push(m, False)
    elif line == b"01":
        _push(m, True)
    else:
        _push(m, m._text_int(line))


def _long_text(m: _Machine) -> None:
    _push(m, m._text_int(m._line()))


def _float_text(m: _Machine) -> None:
    _push(m, float(m._line()))


def _binfloat(m: _Machine) -> None:
    _push(m, m._unpack(_F64))


def _binint(m: _Machine) -> None:
    _push(m, m._unpack(_I32))


def _binint1(m: _Machine) -> None:
    _push(m, m._unpack(_U8))


def _binint2(m: _Machine) -> None:
    _push(m, m._unpack(_U16))


def _long1(m: _Machine) -> None:
    _push(m, m._int(bytes(m._take(m._unpack(_U8)))))


def _long4(m: _Machine) -> None:
    n = m._unpack(_I32)
    _push(m, m._int(bytes(m._take(n))))


def _none(m: _Machine) -> None:
    _push(m, None)


def _true(m: _Machine) -> None:
    _push(m, True)


def _false(m: _Machine) -> None:
    _push(m, False)


def _text(m: _Machine, n: int) -> None:
    m._count()
    _push(m, str(m._take(n), "utf-8", "surrogatepass"))


def _short_binunicode(m: _Machine) -> None:
    _text(m, m._unpack(_U8))


def _binunicode(m: _Machine) -> None:
    _text(m, m._unpack(_U32))


def _binunicode8(m: _Machine) -> None:
    _text(m, m._unpack(_U64))


def _unicode_text(m: _Machine) -> None:
    m._count()
    _push(m, m._line().decode("raw-unicode-escape"))


def _string_text(m: _Machine) -> None:
    m._count()
    line = m._line()
    if len(line) < 2 or line[:1] != line[-1:] or line[:1] not in (b"'", b'"'):
        raise m._fail("a STRING argument is not quoted")
    import codecs

    _push(m, codecs.escape_decode(line[1:-1])[0].decode("latin-1"))


def _bytes(m: _Machine, n: int) -> None:
    m._count()
    _push(m, bytes(m._take(n)))


def _short_binbytes(m: _Machine) -> None:
    _bytes(m, m._unpack(_U8))


def _binbytes(m: _Machine) -> None:
    _bytes(m, m._unpack(_U32))


def _binbytes8(m: _Machine) -> None:
    _bytes(m, m._unpack(_U64))


def _bytearray8(m: _Machine) -> None:
    m._count()
    _push(m, bytearray(m._take(m._unpack(_U64))))


def _binstring(m: _Machine) -> None:
    # Python 2 str: bytes that were text in practice (torch's legacy files write keys so).
    m._count()
    _push(m, bytes(m._take(m._unpack(_I32))).decode("latin-1"))


def _short_binstring(m: _Machine) -> None:
    m._count()
    _push(m, bytes(m._take(m._unpack(_U8))).decode("latin-1"))


def _empty_list(m: _Machine) -> None:
    m._count()
    _push(m, [])


def _empty_dict(m: _Machine) -> None:
    m._count()
    _push(m, {})


def _empty_tuple(m: _Machine) -> None:
    _push(m, ())


def _empty_set(m: _Machine) -> None:
    m._count()
    _push(m, set())


def _list(m: _Machine) -> None:
    items = m._pop_mark()
    m._count(1 + len(items) // 8)
    _push(m, items)


def _tuple(m: _Machine) -> None:
    items = m._pop_mark()
    m._count(1 + len(items) // 8)
    _push(m, tuple(items))


def _tuple_n(n: int) -> Callable[[_Machine], None]:
    def handler(m: _Machine) -> None:
        if len(m.stack) < n or (m.marks and m.marks[-1] > len(m.stack) - n):
            raise m._fail("a TUPLE opcode has too few items")
        items = tuple(m.stack[len(m.stack) - n :])
        del m.stack[len(m.stack) - n :]
        m._count()
        _push(m, items)

    return handler


def _dict(m: _Machine) -> None:
    items = m._pop_mark()
    m._count(1 + len(items) // 8)
    _push(m, _pairs_into({}, items, m))


def _frozenset(m: _Machine) -> None:
    items = m._pop_mark()
    m._count(1 + len(items) // 8)
    _push(m, frozenset(items))


def _pairs_into(target: dict[Any, Any], items: list[Any], m: _Machine) -> dict[Any, Any]:
    if len(items) % 2:
        raise m._fail("a dict opcode has a key without a value")
    for i in range(0, len(items), 2):
        target[items[i]] = items[i + 1]
    return target


def _setitem(m: _Machine) -> None:
    value = m.stack.pop()
    key = m.stack.pop()
    _set_items(m, m.stack[-1], [key, value])


def _setitems(m: _Machine) -> None:
    items = m._pop_mark()
    _set_items(m, m.stack[-1], items)


def _set_items(m: _Machine, target: Any, items: list[Any]) -> None:
    m._count(len(items) // 8)
    if isinstance(target, dict):
        _pairs_into(target, items, m)
    elif isinstance(target, Call):
        _pairs_into(target.items, items, m)
    else:
        raise m._fail(f"SETITEMS on a {type(target).__name__}")


def _append(m: _Machine) -> None:
    value = m.stack.pop()
    _extend(m, m.stack[-1], [value])


def _appends(m: _Machine) -> None:
    items = m._pop_mark()
    _extend(m, m.stack[-1], items)


def _extend(m: _Machine, target: Any, items: list[Any]) -> None:
    m._count(len(items) // 8)
    if isinstance(target, list):
        target.extend(items)
    elif isinstance(target, Call):
        target.entries.extend(items)
    else:
        raise m._fail(f"APPENDS on a {type(target).__name__}")


def _additems(m: _Machine) -> None:
    items = m._pop_mark()
    target = m.stack[-1]
    if not isinstance(target, set):
        raise m._fail("ADDITEMS on something that is not a set")
    m._count(len(items) // 8)
    target.update(items)


def _global(m: _Machine, module: str, name: str) -> None:
    if len(module) > 1000 or len(name) > 1000:
        raise m._fail("a global's name is too long")
    m._count()
    _push(m, m.hooks.name(Global(module, name)))


def _global_text(m: _Machine) -> None:
    module = m._line().decode("utf-8", "replace")
    name = m._line().decode("utf-8", "replace")
    _global(m, module, name)


def _stack_global(m: _Machine) -> None:
    name = m.stack.pop()
    module = m.stack.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise m._fail("STACK_GLOBAL of something that is not text")
    _global(m, module, name)


def _call(m: _Machine, func: Any, args: Any, kwargs: Any = None) -> None:
    if not isinstance(args, tuple):
        raise m._fail("a call's arguments are not a tuple")
    m._count()
    record = Call(func, args, kwargs=dict(kwargs) if isinstance(kwargs, dict) else {})
    _push(m, m.hooks.call(plain_call(record)))


def _reduce(m: _Machine) -> None:
    args = m.stack.pop()
    func = m.stack.pop()
    _call(m, func, args)


def _newobj(m: _Machine) -> None:
    args = m.stack.pop()
    cls = m.stack.pop()
    _call(m, cls, args)


def _newobj_ex(m: _Machine) -> None:
    kwargs = m.stack.pop()
    args = m.stack.pop()
    cls = m.stack.pop()
    _call(m, cls, args, kwargs)


def _inst(m: _Machine) -> None:
    module = m._line().decode("utf-8", "replace")
    name = m._line().decode("utf-8", "replace")
    args = tuple(m._pop_mark())
    m._count()
    _call(m, m.hooks.name(Global(module, name)), args)


def _obj(m: _Machine) -> None:
    items = m._pop_mark()
    if not items:
        raise m._fail("OBJ without a class")
    _call(m, items[0], tuple(items[1:]))


def _build(m: _Machine) -> None:
    state = m.stack.pop()
    target = m.stack[-1]
    if isinstance(target, Call):
        target.state = state
    elif isinstance(target, (dict, list)):
        pass  # attributes of a dict or list subclass (a state_dict's `_metadata`): not needed
    else:
        raise m._fail(f"BUILD on a {type(target).__name__}")


def _persid_text(m: _Machine) -> None:
    m._count()
    _push(m, m.hooks.persistent(m._line().decode("ascii")))


def _binpersid(m: _Machine) -> None:
    m._count()
    _push(m, m.hooks.persistent(m.stack.pop()))


def _put(m: _Machine, index: int) -> None:
    if not m.stack or (m.marks and m.marks[-1] == len(m.stack)):
        raise m._fail("PUT with an empty stack")
    m.memo[index] = m.stack[-1]


def _put_text(m: _Machine) -> None:
    _put(m, m._text_int(m._line()))


def _binput(m: _Machine) -> None:
    _put(m, m._unpack(_U8))


def _long_binput(m: _Machine) -> None:
    _put(m, m._unpack(_U32))


def _memoize(m: _Machine) -> None:
    _put(m, len(m.memo))


def _get(m: _Machine, index: int) -> None:
    if index not in m.memo:
        raise m._fail(f"memo entry {index} was never stored")
    _push(m, m.memo[index])


def _get_text(m: _Machine) -> None:
    _get(m, m._text_int(m._line()))


def _binget(m: _Machine) -> None:
    _get(m, m._unpack(_U8))


def _long_binget(m: _Machine) -> None:
    _get(m, m._unpack(_U32))


_HANDLERS: dict[int, Callable[[_Machine], None]] = {
    op[0]: handler
    for op, handler in {
        b".": _stop,
        b"\x80": _proto,
        b"\x95": _frame,
        b"(": _mark,
        b"0": _pop,
        b"1": _pop_mark_op,
        b"2": _dup,
        b"I": _int_text,
        b"L": _long_text,
        b"F": _float_text,
        b"G": _binfloat,
        b"J": _binint,
        b"K": _binint1,
        b"M": _binint2,
        b"\x8a": _long1,
        b"\x8b": _long4,
        b"N": _none,
        b"\x88": _true,
        b"\x89": _false,
        b"\x8c": _short_binunicode,
        b"X": _binunicode,
        b"\x8d": _binunicode8,
        b"V": _unicode_text,
        b"S": _string_text,
        b"T": _binstring,
        b"U": _short_binstring,
        b"C": _short_binbytes,
        b"B": _binbytes,
        b"\x8e": _binbytes8,
        b"\x96": _bytearray8,
        b"]": _empty_list,
        b"}": _empty_dict,
        b")": _empty_tuple,
        b"\x8f": _empty_set,
        b"l": _list,
        b"t": _tuple,
        b"\x85": _tuple_n(1),
        b"\x86": _tuple_n(2),
        b"\x87": _tuple_n(3),
        b"d": _dict,
        b"\x91": _frozenset,
        b"s": _setitem,
        b"u": _setitems,
        b"a": _append,
        b"e": _appends,
        b"\x90": _additems,
        b"c": _global_text,
        b"\x93": _stack_global,
        b"R": _reduce,
        b"\x81": _newobj,
        b"\x92": _newobj_ex,
        b"i": _inst,
        b"o": _obj,
        b"b": _build,
        b"P": _persid_text,
        b"Q": _binpersid,
        b"p": _put_text,
        b"q": _binput,
        b"r": _long_binput,
        b"\x94": _memoize,
        b"g": _get_text,
        b"h": _binget,
        b"j": _long_binget,
    }.items()
}
# Not allowed: EXT1/2/4 (the copyreg extension registry) and NEXT_BUFFER/READONLY_BUFFER
# (out-of-band buffers): no file this reader opens uses them.


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
