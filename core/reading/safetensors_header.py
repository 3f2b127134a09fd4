"""Safetensors headers parsed from their bytes: tensor records, metadata and the app's aliases.

The layout (an 8-byte little-endian length, a JSON object, then the data) is checked as the
safetensors library checks it: every entry's byte range matches its dtype and shape, the ranges
cover the data section without holes or overlaps (in any order in the header), and the data
section ends where the file does. Nothing is read past the header.
"""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.records import ITEM_SIZES, StorageRef, TensorRecord
from modelbrowse.core.reading.structured_text import parse_json

# The metadata key under which the app records tied keys it saved once: {"alias": "key"}.
ALIASES_KEY = "modelbrowse.aliases"

# safetensors dtype -> the records' dtype name.
SAFETENSORS_DTYPES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "C64": "complex64",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}


@dataclass
class SafetensorsHeader:
    """What one file's header says: tensors in header order, metadata, usable aliases."""

    path: Path
    tensors: dict[str, TensorRecord]
    metadata: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    info: list[tuple[str, str]] = field(default_factory=list)


def read_header(path: Path, limits: Limits = DEFAULT_LIMITS) -> SafetensorsHeader:
    """The header of a safetensors file, checked against the file's size."""
    where = f"{path} is a damaged safetensors file"
    try:
        with open(path, "rb") as handle:
            size = _file_size(handle.fileno())
            first = handle.read(8)
            if len(first) < 8:
                raise ReadError(f"{where}: it is shorter than its 8-byte header length")
            length = int.from_bytes(first, "little")
            if length > limits.header_bytes:
                raise ReadError(
                    f"{where}: its header declares {length:,} bytes; at most "
                    f"{limits.header_bytes:,} are read"
                )
            if 8 + length > size:
                raise ReadError(
                    f"{where}: its header says {length:,} bytes but the file has {size - 8:,} "
                    "(truncated?)"
                )
            raw = handle.read(length)
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) != length:
        raise ReadError(f"{where}: it ends inside its header (truncated while read?)")
    if raw[:1] != b"{":
        raise ReadError(f"{where}: its header is not a JSON object")
    enabled = gc.isenabled()
    gc.disable()  # millions of new objects would make the collector walk them all, often
    try:
        header = parse_json(raw, f"{where}: its header")
        del raw
        if not isinstance(header, dict):
            raise ReadError(f"{where}: its header is not a JSON object")
        return _checked(path, header, 8 + length, size - 8 - length, where, limits)
    finally:
        if enabled:
            gc.enable()


def _file_size(fd: int) -> int:
    import os
    import stat

    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ReadError(f"{fd} is not a regular file")
    return info.st_size


def _checked(
    path: Path, header: dict[str, Any], data_start: int, data_size: int, where: str, limits: Limits
) -> SafetensorsHeader:
    metadata = header.pop("__metadata__", None)
    file = str(path)
    built: list[tuple[str, TensorRecord]] = []
    # Entries written in data order (as every writer does) each end where the next begins:
    # checked as they come, with no list of ranges to sort.
    following = data_size
    in_order = True
    # Shape -> (shape, stride): one pair of tuples per distinct shape, not per tensor.
    layouts: dict[tuple[int, ...], tuple[tuple[int, ...], tuple[int, ...]]] = {}
    dtypes = SAFETENSORS_DTYPES
    rank = limits.tensor_rank
    # Entries are taken off the parsed header as they become records (last first), so the
    # two are not both held whole: a 1M-key header is about 700 MB of Python objects.
    while header:
        key, entry = header.popitem()
        try:
            dtype = dtypes[entry["dtype"]]
            shape = tuple(entry["shape"])
            begin, end = entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ReadError(_entry_problem(where, key, entry)) from None
        if type(begin) is not int or type(end) is not int or not 0 <= begin <= end:
            raise ReadError(_entry_problem(where, key, entry))
        if len(shape) > rank:
            raise ReadError(_entry_problem(where, key, entry))
        for n in shape:
            if type(n) is not int or not 0 <= n < 1 << 62:
                raise ReadError(_entry_problem(where, key, entry))
        if end > data_size:
            raise ReadError(
                f"{where}: the data of {_key(key)} needs {end - data_size:,} bytes more than "
                "the file has (truncated?)"
            )
        numel = math.prod(shape)
        itemsize = ITEM_SIZES[dtype]
        if numel * itemsize != end - begin:
            raise ReadError(
                f"{where}: {_key(key)} is {dtype} {list(shape)} ({numel * itemsize:,} bytes) "
                f"but its data_offsets hold {end - begin:,}"
            )
        storage = StorageRef(file, data_start + begin, end - begin, key)
        known = layouts.get(shape)
        if known is None:
            known = layouts[shape] = (shape, _row_major(shape))
        shape, stride = known
        built.append((key, TensorRecord(dtype, shape, stride, 0, storage)))
        if end != following:
            in_order = False
        following = begin
    built.reverse()
    if not in_order or following != 0:
        ranges = [
            (r.storage.start - data_start, r.storage.start - data_start + r.storage.nbytes, k)
            for k, r in built
        ]
        _check_ranges(ranges, data_size, where)
    # Sorted by key, as the safetensors library lists them (the header's own order is the
    # writer's, and trees and --print have always followed the sorted one). The keys are
    # unique, so the pairs sort by key alone, without a call per key.
    built.sort()
    tensors = dict(built)
    del built
    result = SafetensorsHeader(path, tensors)
    if metadata is not None:
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            raise ReadError(f"{where}: its __metadata__ is not a map of strings to strings")
        aliases = metadata.pop(ALIASES_KEY, None)
        result.metadata = metadata
        if aliases is not None:
            result.aliases, result.info = parse_aliases(aliases, tensors, str(path), limits)
    return result


def _row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 1:
        return (1,)
    if len(shape) == 2:
        return (shape[1], 1)
    stride = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        stride[i] = stride[i + 1] * shape[i + 1]
    return tuple(stride)


def _check_ranges(ranges: list[tuple[int, int, str]], data_size: int, where: str) -> None:
    """The byte ranges tile the data section, as the safetensors library requires."""
    ranges.sort()
    reached = 0
    for begin, end, key in ranges:
        if begin != reached:
            what = "overlaps another tensor's" if begin < reached else "leaves a gap before it"
            raise ReadError(f"{where}: the data of {_key(key)} {what} (bytes {begin:,}-{end:,})")
        reached = end
    if reached != data_size:
        raise ReadError(
            f"{where}: its tensors hold {reached:,} bytes but its data section has {data_size:,}"
        )


def parse_aliases(
    text: str, tensors: dict[str, Any], where: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The app's `{"alias": "key"}` map; anything unusable is dropped with an info row."""
    try:
        found = parse_json(text, "its aliases")
    except ReadError as exc:
        return {}, [("aliases", f"ignored: {str(exc).removeprefix('its aliases ')}")]
    if not isinstance(found, dict):
        return {}, [("aliases", f"ignored: a JSON {type(found).__name__}, not an object")]
    usable: dict[str, str] = {}
    dropped = 0
    for alias, key in found.items():
        if isinstance(key, str) and key in tensors and alias not in tensors:
            usable[alias] = key
        else:
            dropped += 1
    rows = []
    if dropped:
        rows.append(("aliases", f"{dropped:,} ignored (naming no tensor of the file, or a key)"))
    return usable, rows


def _entry_problem(where: str, key: str, entry: Any) -> str:
    if isinstance(entry, dict) and entry.get("dtype") not in SAFETENSORS_DTYPES:
        dtype = entry.get("dtype")
        shown = repr(dtype)[:40] if isinstance(dtype, str) else "no dtype"
        return f"{where}: {_key(key)} has dtype {shown}, which this app does not read"
    return f"{where}: the entry {_key(key)} is not dtype, shape and data_offsets in range"


def _key(key: str) -> str:
    from modelbrowse.core.units import printable

    return repr(printable(key, 80))
