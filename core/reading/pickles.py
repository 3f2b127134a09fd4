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
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.pickle_opcodes import OPCODES, STOP
from modelbrowse.core.reading.pickle_records import (
    Call,
    Global,
    PersistentId,
    PickleHooks,
    globals_in,
    plain_call,
    walk,
)

__all__ = [
    "Call",
    "Global",
    "PersistentId",
    "PickleHooks",
    "PickleMachine",
    "globals_in",
    "load_pickle",
    "plain_call",
    "walk",
]


def load_pickle(
    data: bytes | memoryview,
    where: str,
    hooks: PickleHooks | None = None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    start: int = 0,
) -> tuple[Any, int]:
    """Run the pickle at `data[start:]`; the value it builds and the offset after its STOP."""
    machine = PickleMachine(memoryview(data), where, hooks or PickleHooks(), limits, start)
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


class PickleMachine:
    """The machine's state (stack, marks, memo, position) and how opcodes read arguments;
    the opcodes themselves are in `pickle_opcodes`."""

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

    def fail(self, why: str) -> ReadError:
        return ReadError(f"{self.where} is a damaged pickle: {why} at byte {self.pos}")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"it declares {n:,} bytes but ends first")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: struct.Struct) -> Any:
        value = fmt.unpack_from(self.data, self.pos)[0]
        self.pos += fmt.size
        return value

    def line(self) -> bytes:
        end = bytes(self.data[self.pos : self.pos + 65536]).find(b"\n")
        if end < 0:
            raise self.fail("a text argument has no end")
        line = bytes(self.data[self.pos : self.pos + end])
        self.pos += end + 1
        return line

    def count(self, n: int = 1) -> None:
        self.objects += n
        if self.objects > self.limits.pickle_objects:
            raise ReadError(
                f"{self.where} creates more than {self.limits.pickle_objects:,} objects; "
                "refused before it takes the memory"
            )

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self.fail("an opcode needs a MARK that is not there")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def int_of(self, raw: bytes) -> int:
        if len(raw) * 2.5 > self.limits.int_digits:
            raise self.fail("an integer too long to be a size or count")
        return int.from_bytes(raw, "little", signed=True)

    def text_int(self, line: bytes) -> int:
        text = line.decode("ascii").rstrip("L")
        if len(text) > self.limits.int_digits:
            raise self.fail("an integer too long to be a size or count")
        return int(text)

    # --- the machine ---

    def run(self) -> Any:
        data = self.data
        stack = self.stack
        size = len(data)
        opcodes = OPCODES
        while True:
            pos = self.pos
            if pos >= size:
                raise self.fail("it ends before its STOP opcode")
            op = data[pos]
            self.pos = pos + 1
            if op == STOP:
                if len(stack) != 1 or self.marks:
                    raise self.fail("its stack is not one value at STOP")
                return stack.pop()
            handler = opcodes[op]
            if handler is None:
                raise self.fail(f"opcode 0x{op:02x} is not allowed")
            handler(self)
