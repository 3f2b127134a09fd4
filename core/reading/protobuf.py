"""Protocol buffers' wire format walked without a schema: each field's number, wire type and
value, or the byte span of a length-delimited value, checked against the bytes it lies in.

Only what the ONNX reader needs: nothing is decoded into messages here, and a value's bytes are
located, never copied.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass

from modelbrowse.core.reading.limits import ReadError

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_FIXED_SIZES = {FIXED64: 8, FIXED32: 4}
# A varint holds at most 64 bits: ten bytes of seven.
_VARINT_BYTES = 10


# What the walker reads: bytes, or a file's map.
Bytes = bytes | mmap.mmap


@dataclass(frozen=True, slots=True)
class Field:
    """One field: for a varint or fixed field `value` is its bits; for a length-delimited one
    `value` is where its bytes start and `length` how many there are. `start` is where the
    field's tag starts and `end` where the field ends."""

    number: int
    wire: int
    value: int
    length: int
    start: int
    end: int


def read_varint(data: Bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    """The varint at `pos` and the position after it; a ReadError if it runs past `end`."""
    result = shift = 0
    for count in range(_VARINT_BYTES):
        if pos >= end:
            raise ReadError(f"{where}: a number runs past the end of its message (truncated?)")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if count == _VARINT_BYTES - 1 and byte > 1:
                break  # more than 64 bits
            return result, pos
        shift += 7
    raise ReadError(f"{where}: a number is longer than 64 bits")


def fields(data: Bytes, start: int, end: int, where: str) -> Iterator[Field]:
    """The fields of the message in `data[start:end]`, in order; a ReadError for a wire type
    that is not allowed here (groups) or a field that runs past `end`."""
    pos = start
    while pos < end:
        tag, after = read_varint(data, pos, end, where)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ReadError(f"{where}: a field numbered 0 (not protocol buffers, or damaged)")
        if wire == VARINT:
            value, stop = read_varint(data, after, end, where)
            yield Field(number, wire, value, 0, pos, stop)
        elif wire == LENGTH:
            length, begin = read_varint(data, after, end, where)
            stop = begin + length
            if stop > end:
                raise ReadError(
                    f"{where}: field {number} says {length:,} bytes but {end - begin:,} are left "
                    "(truncated?)"
                )
            yield Field(number, wire, begin, length, pos, stop)
        elif wire in _FIXED_SIZES:
            stop = after + _FIXED_SIZES[wire]
            if stop > end:
                raise ReadError(f"{where}: field {number} runs past the end (truncated?)")
            value = int.from_bytes(data[after:stop], "little")
            yield Field(number, wire, value, 0, pos, stop)
        else:
            raise ReadError(f"{where}: field {number} has wire type {wire}, not one ONNX uses")
        pos = stop


def encode_varint(value: int) -> bytes:
    """`value` (at least 0) as a varint."""
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def packed_varints(data: Bytes, field: Field, where: str) -> list[int]:
    """The varints of a packed repeated field."""
    values = []
    pos, end = field.value, field.value + field.length
    while pos < end:
        value, pos = read_varint(data, pos, end, where)
        values.append(value)
    return values


def text(data: Bytes, field: Field, where: str, limit: int = 4096) -> str:
    """A string field's value (at most `limit` bytes), decoded as UTF-8."""
    if field.wire != LENGTH:
        raise ReadError(f"{where}: field {field.number} is not a string")
    if field.length > limit:
        raise ReadError(f"{where}: a name of {field.length:,} bytes (at most {limit:,})")
    raw = data[field.value : field.value + field.length]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ReadError(f"{where}: a name that is not UTF-8 ({raw[:40]!r})") from None
