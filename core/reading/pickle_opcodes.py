"""The restricted pickle machine's instruction set: one handler per opcode it allows.

Each handler reads its arguments through the machine (every length checked against the bytes
left), counts the objects it creates, and pushes plain data or records: nothing is imported and
nothing called. `OPCODES` maps an opcode byte to its handler; an opcode without one is refused.
Not allowed: EXT1/2/4 (the copyreg extension registry) and NEXT_BUFFER/READONLY_BUFFER
(out-of-band buffers): no file this reader opens uses them.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelbrowse.core.reading.pickle_records import Call, Global, plain_call

if TYPE_CHECKING:
    from modelbrowse.core.reading.pickles import PickleMachine

Handler = Callable[["PickleMachine"], None]

STOP = ord(".")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct(">d")


# --- framing and the stack ---


def _proto(m: PickleMachine) -> None:
    if m.unpack(_U8) > 5:
        raise m.fail("a pickle protocol newer than 5")


def _frame(m: PickleMachine) -> None:
    length = m.unpack(_U64)
    if m.pos + length > len(m.data):
        raise m.fail(f"a frame of {length:,} bytes runs past the end")


def _mark(m: PickleMachine) -> None:
    m.marks.append(len(m.stack))


def _pop(m: PickleMachine) -> None:
    if m.marks and m.marks[-1] == len(m.stack):
        m.marks.pop()
    else:
        m.stack.pop()


def _pop_mark(m: PickleMachine) -> None:
    m.pop_mark()


def _dup(m: PickleMachine) -> None:
    m.stack.append(m.stack[-1])


# --- numbers, text and bytes ---


def _constant(value: Any) -> Handler:
    """None, True, False, (): immutable, so one object serves every push."""

    def handler(m: PickleMachine) -> None:
        m.stack.append(value)

    return handler


def _number(fmt: struct.Struct) -> Handler:
    def handler(m: PickleMachine) -> None:
        m.stack.append(m.unpack(fmt))

    return handler


def _int_text(m: PickleMachine) -> None:
    line = m.line()
    if line == b"00":  # protocol 0 writes booleans as INT 00 / 01
        m.stack.append(False)
    elif line == b"01":
        m.stack.append(True)
    else:
        m.stack.append(m.text_int(line))


def _long_text(m: PickleMachine) -> None:
    m.stack.append(m.text_int(m.line()))


def _float_text(m: PickleMachine) -> None:
    m.stack.append(float(m.line()))


def _long1(m: PickleMachine) -> None:
    m.stack.append(m.int_of(bytes(m.take(m.unpack(_U8)))))


def _long4(m: PickleMachine) -> None:
    n = m.unpack(_I32)
    m.stack.append(m.int_of(bytes(m.take(n))))


def _sized(fmt: struct.Struct, make: Callable[[memoryview], Any]) -> Handler:
    """An opcode whose argument is `fmt`'s length, then that many bytes, made into a value."""

    def handler(m: PickleMachine) -> None:
        n = m.unpack(fmt)
        m.count()
        m.stack.append(make(m.take(n)))

    return handler


def _utf8(raw: memoryview) -> str:
    return str(raw, "utf-8", "surrogatepass")


def _latin1(raw: memoryview) -> str:
    # Python 2 str: bytes that were text in practice (torch's legacy files write keys so).
    return bytes(raw).decode("latin-1")


def _unicode_text(m: PickleMachine) -> None:
    m.count()
    m.stack.append(m.line().decode("raw-unicode-escape"))


def _string_text(m: PickleMachine) -> None:
    m.count()
    line = m.line()
    if len(line) < 2 or line[:1] != line[-1:] or line[:1] not in (b"'", b'"'):
        raise m.fail("a STRING argument is not quoted")
    m.stack.append(codecs.escape_decode(line[1:-1])[0].decode("latin-1"))


# --- containers ---


def _empty(make: Callable[[], Any]) -> Handler:
    def handler(m: PickleMachine) -> None:
        m.count()
        m.stack.append(make())

    return handler


def _from_mark(make: Callable[[PickleMachine, list[Any]], Any]) -> Handler:
    """LIST, TUPLE, DICT, FROZENSET: the items above the last MARK, made into one value."""

    def handler(m: PickleMachine) -> None:
        items = m.pop_mark()
        m.count(1 + len(items) // 8)
        m.stack.append(make(m, items))

    return handler


def _tuple_n(n: int) -> Handler:
    def handler(m: PickleMachine) -> None:
        if len(m.stack) < n or (m.marks and m.marks[-1] > len(m.stack) - n):
            raise m.fail("a TUPLE opcode has too few items")
        items = tuple(m.stack[len(m.stack) - n :])
        del m.stack[len(m.stack) - n :]
        m.count()
        m.stack.append(items)

    return handler


def _pairs_into(target: dict[Any, Any], items: list[Any], m: PickleMachine) -> dict[Any, Any]:
    if len(items) % 2:
        raise m.fail("a dict opcode has a key without a value")
    for i in range(0, len(items), 2):
        target[items[i]] = items[i + 1]
    return target


def _setitem(m: PickleMachine) -> None:
    value = m.stack.pop()
    key = m.stack.pop()
    _set_items(m, m.stack[-1], [key, value])


def _setitems(m: PickleMachine) -> None:
    items = m.pop_mark()
    _set_items(m, m.stack[-1], items)


def _set_items(m: PickleMachine, target: Any, items: list[Any]) -> None:
    m.count(len(items) // 8)
    if isinstance(target, dict):
        _pairs_into(target, items, m)
    elif isinstance(target, Call):
        _pairs_into(target.items, items, m)
    else:
        raise m.fail(f"SETITEMS on a {type(target).__name__}")


def _append(m: PickleMachine) -> None:
    value = m.stack.pop()
    _extend(m, m.stack[-1], [value])


def _appends(m: PickleMachine) -> None:
    items = m.pop_mark()
    _extend(m, m.stack[-1], items)


def _extend(m: PickleMachine, target: Any, items: list[Any]) -> None:
    m.count(len(items) // 8)
    if isinstance(target, list):
        target.extend(items)
    elif isinstance(target, Call):
        target.entries.extend(items)
    else:
        raise m.fail(f"APPENDS on a {type(target).__name__}")


def _additems(m: PickleMachine) -> None:
    items = m.pop_mark()
    target = m.stack[-1]
    if not isinstance(target, set):
        raise m.fail("ADDITEMS on something that is not a set")
    m.count(len(items) // 8)
    target.update(items)


# --- globals, calls and object state: records, never imported or called ---


def _global(m: PickleMachine, module: str, name: str) -> None:
    if len(module) > 1000 or len(name) > 1000:
        raise m.fail("a global's name is too long")
    m.count()
    m.stack.append(m.hooks.name(Global(module, name)))


def _global_text(m: PickleMachine) -> None:
    _global(m, *_names(m))


def _names(m: PickleMachine) -> tuple[str, str]:
    """GLOBAL's and INST's arguments: a module and a name, each on its own line."""
    return m.line().decode("utf-8", "replace"), m.line().decode("utf-8", "replace")


def _stack_global(m: PickleMachine) -> None:
    name = m.stack.pop()
    module = m.stack.pop()
    if not isinstance(module, str) or not isinstance(name, str):
        raise m.fail("STACK_GLOBAL of something that is not text")
    _global(m, module, name)


def _call(m: PickleMachine, func: Any, args: Any, kwargs: Any = None) -> None:
    if not isinstance(args, tuple):
        raise m.fail("a call's arguments are not a tuple")
    m.count()
    record = Call(func, args, kwargs=dict(kwargs) if isinstance(kwargs, dict) else {})
    m.stack.append(m.hooks.call(plain_call(record)))


def _reduce(m: PickleMachine) -> None:  # REDUCE and NEWOBJ: callable, then its arguments
    args = m.stack.pop()
    func = m.stack.pop()
    _call(m, func, args)


def _newobj_ex(m: PickleMachine) -> None:
    kwargs = m.stack.pop()
    args = m.stack.pop()
    cls = m.stack.pop()
    _call(m, cls, args, kwargs)


def _inst(m: PickleMachine) -> None:
    module, name = _names(m)
    args = tuple(m.pop_mark())
    m.count()
    _call(m, m.hooks.name(Global(module, name)), args)


def _obj(m: PickleMachine) -> None:
    items = m.pop_mark()
    if not items:
        raise m.fail("OBJ without a class")
    _call(m, items[0], tuple(items[1:]))


def _build(m: PickleMachine) -> None:
    state = m.stack.pop()
    target = m.stack[-1]
    if isinstance(target, Call):
        target.state = state
    elif isinstance(target, (dict, list)):
        pass  # attributes of a dict or list subclass (a state_dict's `_metadata`): not needed
    else:
        raise m.fail(f"BUILD on a {type(target).__name__}")


def _persid_text(m: PickleMachine) -> None:
    m.count()
    m.stack.append(m.hooks.persistent(m.line().decode("ascii")))


def _binpersid(m: PickleMachine) -> None:
    m.count()
    m.stack.append(m.hooks.persistent(m.stack.pop()))


# --- the memo ---


def _put(m: PickleMachine, index: int) -> None:
    if not m.stack or (m.marks and m.marks[-1] == len(m.stack)):
        raise m.fail("PUT with an empty stack")
    m.memo[index] = m.stack[-1]


def _put_text(m: PickleMachine) -> None:
    _put(m, m.text_int(m.line()))


def _binput(fmt: struct.Struct) -> Handler:
    def handler(m: PickleMachine) -> None:  # one per object a pickle makes: kept short
        index = fmt.unpack_from(m.data, m.pos)[0]
        m.pos += fmt.size
        _put(m, index)

    return handler


def _memoize(m: PickleMachine) -> None:
    _put(m, len(m.memo))


def _get(m: PickleMachine, index: int) -> None:
    if index not in m.memo:
        raise m.fail(f"memo entry {index} was never stored")
    m.stack.append(m.memo[index])


def _get_text(m: PickleMachine) -> None:
    _get(m, m.text_int(m.line()))


def _binget(fmt: struct.Struct) -> Handler:
    def handler(m: PickleMachine) -> None:
        index = fmt.unpack_from(m.data, m.pos)[0]
        m.pos += fmt.size
        _get(m, index)

    return handler


_BY_OPCODE: dict[bytes, Handler] = {
    b"\x80": _proto,
    b"\x95": _frame,
    b"(": _mark,
    b"0": _pop,
    b"1": _pop_mark,
    b"2": _dup,
    b"I": _int_text,
    b"L": _long_text,
    b"F": _float_text,
    b"G": _number(_F64),
    b"J": _number(_I32),
    b"K": _number(_U8),
    b"M": _number(_U16),
    b"\x8a": _long1,
    b"\x8b": _long4,
    b"N": _constant(None),
    b"\x88": _constant(True),
    b"\x89": _constant(False),
    b"\x8c": _sized(_U8, _utf8),
    b"X": _sized(_U32, _utf8),
    b"\x8d": _sized(_U64, _utf8),
    b"V": _unicode_text,
    b"S": _string_text,
    b"T": _sized(_I32, _latin1),
    b"U": _sized(_U8, _latin1),
    b"C": _sized(_U8, bytes),
    b"B": _sized(_U32, bytes),
    b"\x8e": _sized(_U64, bytes),
    b"\x96": _sized(_U64, bytearray),
    b"]": _empty(list),
    b"}": _empty(dict),
    b")": _constant(()),
    b"\x8f": _empty(set),
    b"l": _from_mark(lambda m, items: items),
    b"t": _from_mark(lambda m, items: tuple(items)),
    b"\x85": _tuple_n(1),
    b"\x86": _tuple_n(2),
    b"\x87": _tuple_n(3),
    b"d": _from_mark(lambda m, items: _pairs_into({}, items, m)),
    b"\x91": _from_mark(lambda m, items: frozenset(items)),
    b"s": _setitem,
    b"u": _setitems,
    b"a": _append,
    b"e": _appends,
    b"\x90": _additems,
    b"c": _global_text,
    b"\x93": _stack_global,
    b"R": _reduce,
    b"\x81": _reduce,
    b"\x92": _newobj_ex,
    b"i": _inst,
    b"o": _obj,
    b"b": _build,
    b"P": _persid_text,
    b"Q": _binpersid,
    b"p": _put_text,
    b"q": _binput(_U8),
    b"r": _binput(_U32),
    b"\x94": _memoize,
    b"g": _get_text,
    b"h": _binget(_U8),
    b"j": _binget(_U32),
}
# Indexed by the opcode byte; None where the opcode is not allowed (STOP: the loop ends there).
OPCODES: list[Handler | None] = [_BY_OPCODE.get(bytes([op])) for op in range(256)]
