"""The bytes of one GGUF file parsed: header, metadata, tensor infos, the data's layout.

The layout (llama.cpp's `gguf.cpp` and gguf-py's `GGUFReader` are the reference): the magic
`GGUF`, a version (2 or 3), the tensor and metadata counts, the metadata entries (a key, a value
type, a value: numbers, booleans, strings and arrays of any of them, arrays included), the
tensor infos (name, dimensions innermost first, GGML type, offset), padding to the alignment,
then the data. Every count and length is checked against the bytes left before anything is
allocated, and every tensor's data against the data section and the other tensors. Long arrays
(a vocabulary of 150,000 strings) are walked, never kept: their count and first few items.
"""

from __future__ import annotations

import itertools
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from modelbrowse.core.reading.ggml_types import GGML_TYPES, GGMLType
from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.quantization import Quantization
from modelbrowse.core.reading.records import StorageRef, TensorRecord
from modelbrowse.core.units import printable

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS: llama.cpp refuses more
MAX_ENTRIES = 1_000_000  # metadata entries, or tensors, in one file
NAME_BYTES = 4096  # a tensor name or metadata key (llama.cpp allows 63)
KEPT_CHARS = 4096  # of a metadata string, kept to be shown
KEPT_ITEMS = 8  # of an array, kept to be shown
_FIRST_READ = 1 << 20


@dataclass(frozen=True, slots=True)
class GGUFArray:
    """An array value: its item type, its length, and its first items (never all of them)."""

    item_type: str
    count: int
    head: tuple[Value, ...]


Value = int | float | bool | str | GGUFArray


@dataclass
class GGUFContents:
    """What a GGUF file (or split set) holds: tensors in file order, GGML type names by tensor,
    the metadata of its first part."""

    files: list[Path]
    version: int
    metadata: dict[str, Value] = field(default_factory=dict)
    tensors: dict[str, TensorRecord] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    alignment: int = DEFAULT_ALIGNMENT


# Value type id -> (name, struct format) for the scalars.
_SCALARS: dict[int, tuple[str, struct.Struct]] = {
    0: ("uint8", struct.Struct("<B")),
    1: ("int8", struct.Struct("<b")),
    2: ("uint16", struct.Struct("<H")),
    3: ("int16", struct.Struct("<h")),
    4: ("uint32", struct.Struct("<I")),
    5: ("int32", struct.Struct("<i")),
    6: ("float32", struct.Struct("<f")),
    7: ("bool", struct.Struct("<?")),
    10: ("uint64", struct.Struct("<Q")),
    11: ("int64", struct.Struct("<q")),
    12: ("float64", struct.Struct("<d")),
}
_STRING, _ARRAY = 8, 9
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class _Bytes:
    """The start of a file, read as far as the parse needs and no further than `limit`."""

    def __init__(self, handle: BinaryIO, size: int, limit: int, where: str) -> None:
        self.handle, self.size, self.limit, self.where = handle, size, limit, where
        self.buf = handle.read(min(size, limit, _FIRST_READ))
        self.what = "its header"

    def need(self, end: int) -> bytes:
        """The bytes read so far, reaching at least to `end`."""
        if end <= len(self.buf):
            return self.buf
        if end > self.size:
            raise ReadError(f"{self.where}: it ends inside {self.what} (truncated?)")
        if end > self.limit:
            raise ReadError(
                f"{self.where}: its header is longer than the {self.limit:,} bytes a header "
                "may take"
            )
        want = min(self.limit, self.size, max(end, 2 * len(self.buf)))
        more = self.handle.read(want - len(self.buf))
        self.buf += more
        if len(self.buf) < end:
            raise ReadError(f"{self.where}: it ends inside {self.what} (truncated while read?)")
        return self.buf


def read_gguf_file(path: Path, limits: Limits = DEFAULT_LIMITS) -> GGUFContents:
    """One GGUF file, checked; else a one-line ReadError."""
    where = f"{path} is a damaged GGUF file"
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            reader = _Parser(_Bytes(handle, size, limits.header_bytes, where), limits)
            return reader.parse(path)
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from None


class _Parser:
    """One pass over a file's header; `pos` is where the next field starts."""

    def __init__(self, data: _Bytes, limits: Limits) -> None:
        self.data = data
        self.limits = limits
        self.pos = 0
        self.where = data.where

    def fail(self, problem: str) -> ReadError:
        return ReadError(f"{self.where}: {problem}")

    def u32(self) -> int:
        buf = self.data.need(self.pos + 4)
        value: int = _U32.unpack_from(buf, self.pos)[0]
        self.pos += 4
        return value

    def u64(self) -> int:
        buf = self.data.need(self.pos + 8)
        value: int = _U64.unpack_from(buf, self.pos)[0]
        self.pos += 8
        return value

    def raw_string(self, limit: int | None = None) -> bytes:
        length = self.u64()
        if limit is not None and length > limit:
            raise self.fail(f"{self.data.what} holds a name of {length:,} bytes")
        end = self.pos + length
        buf = self.data.need(end)
        raw = buf[self.pos : end]
        self.pos = end
        return raw

    def name(self, what: str) -> str:
        raw = self.raw_string(NAME_BYTES)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            shown = raw.decode("utf-8", "backslashreplace")
            raise self.fail(f"{what} {printable(shown, 80)!r} is not UTF-8") from None

    def has_room(self, nbytes: int) -> bool:
        """Whether `nbytes` more fit in the file; past the header's limit, a ReadError."""
        if self.pos + nbytes > self.data.size:
            return False
        self.data.need(min(self.pos + nbytes, self.data.limit + 1))  # refused past the limit
        return True

    def parse(self, path: Path) -> GGUFContents:
        if self.data.size < 24:
            raise self.fail(f"it is {self.data.size} bytes, shorter than a GGUF header (24)")
        head = self.data.need(24)
        if head[:4] != MAGIC:
            raise ReadError(f"{path} is not a GGUF file (it does not start with 'GGUF')")
        self.pos = 4
        version = self.u32()
        if version & 0xFFFF == 0 and version:
            raise ReadError(f"{path} is a big-endian GGUF file, which this app does not read")
        if version == 1:
            raise ReadError(
                f"{path} is GGUF version 1, an early format this app does not read "
                "(convert it again with a current llama.cpp)"
            )
        if version not in (2, 3):
            raise ReadError(f"{path} is GGUF version {version}; this app reads versions 2 and 3")
        tensor_count, kv_count = self.u64(), self.u64()
        self._check_count(tensor_count, 24, "tensors")
        self._check_count(kv_count, 13, "metadata entries")
        contents = GGUFContents([path], version)
        self.data.what = "its metadata"
        self._metadata(contents.metadata, kv_count)
        contents.alignment = self._alignment(contents.metadata)
        self.data.what = "its tensor infos"
        infos = [self._tensor_info() for _ in range(tensor_count)]
        data_start = -(-self.pos // contents.alignment) * contents.alignment
        _TensorLayout(self, path, contents, data_start).add(infos)
        return contents

    def _check_count(self, count: int, least: int, what: str) -> None:
        if count > MAX_ENTRIES:
            raise self.fail(
                f"its header declares {count:,} {what}; at most {MAX_ENTRIES:,} are read"
            )
        if not self.has_room(count * least):
            raise self.fail(
                f"its header declares {count:,} {what}, more than its {self.data.size:,} bytes "
                "can hold (truncated?)"
            )

    # --- metadata ------------------------------------------------------------------------------

    def _metadata(self, metadata: dict[str, Value], count: int) -> None:
        for _ in range(count):
            key = self.name("a metadata key")
            kind = self.u32()
            if key in metadata:
                raise self.fail(f"the metadata key {_quoted(key)} appears twice")
            metadata[key] = self._value(kind, key, 0)

    def _value(self, kind: int, key: str, depth: int) -> Value:
        scalar = _SCALARS.get(kind)
        if scalar is not None:
            fmt = scalar[1]
            buf = self.data.need(self.pos + fmt.size)
            value: Value = fmt.unpack_from(buf, self.pos)[0]
            self.pos += fmt.size
            return value
        if kind == _STRING:
            raw = self.raw_string()
            return _shown_text(raw, len(raw))
        if kind == _ARRAY:
            return self._array(key, depth + 1)
        raise self.fail(
            f"the metadata entry {_quoted(key)} has value type {kind}, which GGUF does not define"
        )

    def _array(self, key: str, depth: int) -> GGUFArray:
        if depth > self.limits.depth:
            raise self.fail(
                f"the metadata entry {_quoted(key)} nests arrays more than "
                f"{self.limits.depth} levels deep"
            )
        kind = self.u32()
        count = self.u64()
        scalar = _SCALARS.get(kind)
        least = scalar[1].size if scalar is not None else 8 if kind == _STRING else 12
        if kind not in _SCALARS and kind not in (_STRING, _ARRAY):
            raise self.fail(
                f"the metadata array {_quoted(key)} has item type {kind}, which GGUF does "
                "not define"
            )
        if not self.has_room(count * least):
            raise self.fail(
                f"the metadata array {_quoted(key)} declares {count:,} items, more than the "
                "file holds (truncated?)"
            )
        if scalar is not None:
            fmt = scalar[1]
            kept = min(count, KEPT_ITEMS)
            buf = self.data.need(self.pos + count * fmt.size)
            head = tuple(fmt.unpack_from(buf, self.pos + i * fmt.size)[0] for i in range(kept))
            self.pos += count * fmt.size
            return GGUFArray(scalar[0], count, head)
        if kind == _STRING:
            return GGUFArray("string", count, self._strings(count))
        items = []
        for i in range(count):
            inner = self._array(key, depth + 1)
            if i < KEPT_ITEMS:
                items.append(inner)
        return GGUFArray("array", count, tuple(items))

    def _strings(self, count: int) -> tuple[Value, ...]:
        """Walk `count` strings, keeping the first few. A vocabulary's 400,000 strings make
        this the reader's hottest loop: a string's end is checked when the next one is read
        (a length past the file's end stops the walk there), and after the last."""
        head: list[Value] = []
        data, unpack = self.data, _U64.unpack_from
        pos = self.pos
        kept = min(count, KEPT_ITEMS)
        for _ in range(kept):
            end = pos + 8 + unpack(data.need(pos + 8), pos)[0]
            shown = data.need(min(end, pos + 8 + KEPT_CHARS))[pos + 8 : end]
            head.append(_shown_text(shown, end - pos - 8))
            pos = end
        buf = data.need(pos)
        last = len(buf) - 8
        for _ in itertools.repeat(None, count - kept):
            if pos > last:
                buf = data.need(pos + 8)
                last = len(buf) - 8
            pos += 8 + unpack(buf, pos)[0]
        data.need(pos)
        self.pos = pos
        return tuple(head)

    def _alignment(self, metadata: dict[str, Value]) -> int:
        if "general.alignment" not in metadata:
            return DEFAULT_ALIGNMENT
        value = metadata["general.alignment"]
        if isinstance(value, bool) or not isinstance(value, int) or value > 0xFFFFFFFF:
            raise self.fail("general.alignment is not a uint32")
        if value <= 0 or value & (value - 1):
            raise self.fail(f"general.alignment is {value}, not a power of two")
        return value

    # --- tensors -------------------------------------------------------------------------------

    def _tensor_info(self) -> tuple[str, tuple[int, ...], int, int]:
        name = self.name("a tensor name")
        n_dims = self.u32()
        if n_dims > MAX_DIMS:
            raise self.fail(
                f"the tensor {_quoted(name)} has {n_dims:,} dimensions; GGUF allows {MAX_DIMS}"
            )
        buf = self.data.need(self.pos + 8 * n_dims)
        dims = struct.unpack_from(f"<{n_dims}Q", buf, self.pos)
        self.pos += 8 * n_dims
        return name, dims, self.u32(), self.u64()


class _TensorLayout:
    """Tensor infos made records: each type known, each row whole blocks, each tensor's data
    aligned, inside the file and apart from every other's."""

    def __init__(self, parser: _Parser, path: Path, contents: GGUFContents, start: int) -> None:
        self.parser, self.contents, self.start = parser, contents, start
        self.file = str(path)
        self.data_size = parser.data.size - start

    def add(self, infos: list[tuple[str, tuple[int, ...], int, int]]) -> None:
        tensors, types = self.contents.tensors, self.contents.types
        alignment = self.contents.alignment
        fail = self.parser.fail
        ranges: list[tuple[int, int, str]] = []
        for name, dims, type_id, offset in infos:
            if name in tensors:
                raise fail(f"the tensor name {_quoted(name)} appears twice")
            ggml = GGML_TYPES.get(type_id)
            if ggml is None:
                raise fail(
                    f"the tensor {_quoted(name)} has type {type_id}, which this app does not know"
                )
            numel = math.prod(dims)
            if numel >= 1 << 62:
                raise fail(
                    f"the tensor {_quoted(name)} has {numel:,} elements, too many to be real"
                )
            if dims and dims[0] % ggml.block_size:
                raise fail(
                    f"the tensor {_quoted(name)} is {ggml.name} but its rows of {dims[0]:,} are "
                    f"not whole blocks of {ggml.block_size}"
                )
            nbytes = numel // ggml.block_size * ggml.type_size
            if offset % alignment:
                raise fail(
                    f"the data of {_quoted(name)} starts at {offset:,}, not a multiple of the "
                    f"alignment ({alignment})"
                )
            if offset + nbytes > self.data_size:
                raise fail(
                    f"the data of {_quoted(name)} needs "
                    f"{offset + nbytes - max(self.data_size, 0):,} bytes more than the file has "
                    "(truncated?)"
                )
            if nbytes:
                ranges.append((offset, offset + nbytes, name))
            tensors[name] = self._record(name, dims, ggml, offset, nbytes)
            types[name] = ggml.name
        ranges.sort()
        for (_, end, before), (begin, _, name) in itertools.pairwise(ranges):
            if begin < end:
                raise fail(f"the data of {_quoted(name)} overlaps that of {_quoted(before)}")

    def _record(
        self, name: str, dims: tuple[int, ...], ggml: GGMLType, offset: int, nbytes: int
    ) -> TensorRecord:
        shape = tuple(reversed(dims))  # GGUF lists dimensions innermost first; torch outermost
        storage = StorageRef(self.file, self.start + offset, nbytes, name)
        if ggml.dtype is not None:
            return TensorRecord(ggml.dtype, shape, _row_major(shape), 0, storage)
        quantization = Quantization(
            ggml.name, shape, ggml.bits, group_size=ggml.block_size, logical_dtype="float32"
        )
        return TensorRecord("uint8", (nbytes,), (1,), 0, storage, quantization=quantization)


def _row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    stride = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        stride[i] = stride[i + 1] * shape[i + 1]
    return tuple(stride)


def _shown_text(raw: bytes, length: int) -> str:
    """A string from the file as it is shown: decoded (bad bytes replaced), a long one cut."""
    text = raw[:KEPT_CHARS].decode("utf-8", "replace")
    return text if length <= KEPT_CHARS else text + "…"


def _quoted(name: str) -> str:
    return repr(printable(name, 80))
