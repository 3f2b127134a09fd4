"""ONNX models: each initializer located in the file, or in an external data file beside it.

The model's protocol buffer is walked here down to its initializers (name, data type, dims and
where the values lie), so their bytes are mapped like any other tensor's and never copied; the
rest of the graph (nodes, inputs, outputs, opsets) is parsed by the `onnx` package from a copy
without the initializers (`core.reading.onnx_graph`). External data is read only from regular
files inside the model's folder: an absolute location, a `..` or a link out of the folder is
refused.
"""

from __future__ import annotations

import math
import mmap
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.protobuf import (
    LENGTH,
    VARINT,
    Field,
    encode_varint,
    fields,
    packed_varints,
    read_varint,
    text,
)
from modelbrowse.core.reading.records import ITEM_SIZES, StorageRef, TensorRecord, tensor_record

INSTALL_HINT = "pip install 'modelbrowse[onnx]'"
# How the format is named wherever the model is shown.
FORMAT = "ONNX (read-only)"

# TensorProto.DataType -> the records' dtype name (those torch has) or the ONNX name.
ONNX_DTYPES: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "STRING",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
    17: "float8_e4m3fn",
    18: "float8_e4m3fnuz",
    19: "float8_e5m2",
    20: "float8_e5m2fnuz",
    21: "UINT4",
    22: "INT4",
    23: "FLOAT4E2M1",
    24: "float8_e8m0fnu",
    25: "UINT2",
    26: "INT2",
    27: "FLOAT6E2M3",
    28: "FLOAT6E3M2",
}
# ModelProto's fields and their wire types.
MODEL_FIELDS = {
    1: VARINT,
    2: LENGTH,
    3: LENGTH,
    4: LENGTH,
    5: VARINT,
    6: LENGTH,
    7: LENGTH,
    8: LENGTH,
    14: LENGTH,
    20: LENGTH,
    25: LENGTH,
    26: LENGTH,
}
_FIELD_NAMES = {7: "graph", 8: "opset list", 14: "metadata", 20: "training information"}
GRAPH, INITIALIZER, SPARSE_INITIALIZER = 7, 5, 15
# Packed repeated fields whose bytes are the values as stored: float_data, double_data.
_PACKED_VALUES = {4: ("float32", "complex64"), 10: ("float64", "complex128")}
_OTHER_VALUES = {
    3: "a segment",
    5: "int32_data",
    6: "string_data",
    7: "int64_data",
    11: "uint64_data",
}


def onnx_problem(head: bytes, size: int) -> str | None:
    """None for a file whose first bytes start an ONNX model; '' for one that is not ONNX at
    all; else what is wrong with it. ONNX is told by its structure: its IR version first, then
    fields of ModelProto with their wire types, each inside the file (the torch exporter names
    itself `pytorch`, so the words in the bytes tell nothing)."""
    if head[:1] != b"\x08":
        return ""
    pos = count = 0
    end = len(head)
    try:
        while pos < end:
            tag, pos = read_varint(head, pos, end, "")
            number, wire = tag >> 3, tag & 7
            if MODEL_FIELDS.get(number) != wire:
                return None if count >= 3 else ""  # a field of a newer ONNX after known ones
            if wire == VARINT:
                value, pos = read_varint(head, pos, end, "")
                if number == 1 and not (count == 0 and 1 <= value <= 100):
                    return ""
            else:
                length, pos = read_varint(head, pos, end, "")
                if pos + length > size:
                    if count == 0:
                        return ""
                    what = _FIELD_NAMES.get(number, "text")
                    return (
                        f"its {what} says {length:,} bytes but the file has "
                        f"{max(size - pos, 0):,} left (truncated?)"
                    )
                pos += length
            count += 1
    except ReadError:
        return None if count >= 2 and pos >= end - 10 else ""  # a number cut by the sample's end
    return None if count >= 2 else ""


@dataclass
class OnnxModel:
    """What an ONNX model holds: its initializers as records by tree key, the rows its root
    shows, and the files its values lie in."""

    path: Path
    tensors: dict[str, TensorRecord] = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name (why)"


def read_onnx(path: Path, limits: Limits = DEFAULT_LIMITS) -> OnnxModel:
    """An ONNX model's initializers and description; every problem one ReadError line."""
    from modelbrowse.core.reading.onnx_graph import describe_graph

    where = f"{path} is a damaged ONNX model"
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise ReadError(f"{path} is empty (0 bytes)")
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    with data:
        walk = _Walk(path, data, where, limits)
        stripped = walk.run()
    model = OnnxModel(path, files=[path, *walk.externals], skipped=walk.skipped)
    model.rows = describe_graph(stripped, set(walk.tensors) | walk.skipped_names, where, limits)
    model.tensors = tree_keys(walk.tensors, model)
    if walk.externals:
        names = ", ".join(p.name for p in walk.externals[:3])
        more = f" and {len(walk.externals) - 3} more" if len(walk.externals) > 3 else ""
        model.rows.append(("external data", f"{names}{more}"))
    if walk.skipped:
        model.rows.append(("not loaded", ", ".join(walk.skipped)))
    return model


class _Walk:
    """One pass over the model: initializers to records, everything else copied for `onnx`."""

    def __init__(self, path: Path, data: mmap.mmap, where: str, limits: Limits) -> None:
        self.path, self.data, self.where, self.limits = path, data, where, limits
        self.folder = path.parent
        self.tensors: dict[str, TensorRecord] = {}
        self.skipped: list[str] = []
        self.skipped_names: set[str] = set()
        self.externals: list[Path] = []
        self._sizes: dict[str, tuple[Path, int]] = {}

    def run(self) -> bytes:
        """The model's bytes without its initializers (what `onnx` parses)."""
        data, where = self.data, self.where
        kept: list[tuple[int, int]] = []
        graph: Field | None = None
        for item in fields(data, 0, len(data), where):
            expected = MODEL_FIELDS.get(item.number)
            if expected is not None and expected != item.wire:
                raise ReadError(f"{where}: field {item.number} has the wrong wire type")
            if item.number == GRAPH:
                if graph is not None:
                    raise ReadError(f"{where}: it has two graphs")
                graph = item
            else:
                kept.append((item.start, item.end))
        if graph is None:
            raise ReadError(f"{where}: it has no graph")
        graph_kept: list[tuple[int, int]] = []
        for item in fields(data, graph.value, graph.end, where):
            if item.number == INITIALIZER and item.wire == LENGTH:
                self._initializer(item)
            elif item.number == SPARSE_INITIALIZER:
                self.skipped.append("a sparse initializer (sparse tensors are not read)")
            else:
                graph_kept.append((item.start, item.end))
        body = sum(end - start for start, end in kept + graph_kept)
        if body > self.limits.onnx_graph_bytes:
            raise ReadError(
                f"{self.path}: its graph takes {body:,} bytes without the initializers "
                f"(at most {self.limits.onnx_graph_bytes:,} are parsed)"
            )
        graph_bytes = b"".join(data[start:end] for start, end in graph_kept)
        head = bytes([GRAPH << 3 | LENGTH]) + encode_varint(len(graph_bytes))
        return b"".join(data[start:end] for start, end in kept) + head + graph_bytes

    def _initializer(self, item: Field) -> None:
        data, where = self.data, self.where
        dims: list[int] = []
        code = location = 0
        name: str | None = None
        values: Field | None = None
        other = ""
        external: dict[str, str] = {}
        for part in fields(data, item.value, item.end, where):
            number = part.number
            if number == 1:
                dims += packed_varints(data, part, where) if part.wire == LENGTH else [part.value]
            elif number == 2:
                code = part.value
            elif number == 8:
                name = text(data, part, where)
            elif number == 9 or (number in _PACKED_VALUES and part.wire == LENGTH):
                values = part
            elif number == 13:
                key, value = self._entry(part)
                external[key] = value
            elif number == 14:
                location = part.value
            elif number in _PACKED_VALUES or number in _OTHER_VALUES:
                other = _OTHER_VALUES.get(number, "unpacked values")
        if name is None:
            raise ReadError(f"{where}: an initializer without a name")
        what = f"{self.path}: initializer {name!r}"
        if name in self.tensors or name in self.skipped_names:
            raise ReadError(f"{what} appears twice")
        dtype = ONNX_DTYPES.get(code)
        if dtype is None:
            raise ReadError(f"{what} has an unknown data type ({code})")
        if len(dims) > self.limits.tensor_rank or any(d >= 1 << 62 for d in dims):
            raise ReadError(f"{what} has dimensions {dims[:8]} that are not sizes")
        numel = math.prod(dims)
        reason = ""
        if dtype not in ITEM_SIZES:
            reason = f"{dtype} values"
        elif other and location != 1 and numel:
            reason = f"values in {other}"
        elif (
            values is not None
            and values.number in _PACKED_VALUES
            and dtype not in _PACKED_VALUES[values.number]
        ):
            raise ReadError(f"{what}: {dtype} values in the field of another type")
        if reason:
            self.skipped.append(f"{name} ({reason})")
            self.skipped_names.add(name)
            return
        nbytes = numel * ITEM_SIZES[dtype]
        if location == 1:
            storage = self._external(external, nbytes, what)
        elif values is not None:
            if values.length != nbytes:
                raise ReadError(
                    f"{what} holds {values.length:,} bytes but its shape {tuple(dims)} of "
                    f"{dtype} needs {nbytes:,}"
                )
            storage = StorageRef(str(self.path), values.value, nbytes, name)
        elif numel == 0:
            storage = StorageRef(str(self.path), 0, 0, name)
        else:
            raise ReadError(f"{what} holds no values for its {numel:,} elements")
        stride = tuple(math.prod(dims[i + 1 :]) for i in range(len(dims)))
        self.tensors[name] = tensor_record(dtype, dims, stride, 0, storage, what)

    def _entry(self, item: Field) -> tuple[str, str]:
        """A StringStringEntryProto: key and value."""
        key = value = ""
        for part in fields(self.data, item.value, item.end, self.where):
            if part.number in (1, 2) and part.wire == LENGTH:
                decoded = text(self.data, part, self.where)
                key, value = (decoded, value) if part.number == 1 else (key, decoded)
        return key, value

    def _external(self, entries: dict[str, str], nbytes: int, what: str) -> StorageRef:
        location = entries.get("location", "")
        file, size = self._external_file(location, what)
        try:
            offset = int(entries.get("offset") or 0)
            length = int(entries["length"]) if entries.get("length") else nbytes
        except ValueError:
            raise ReadError(f"{what}: its external data offset or length is not a number") from None
        if offset < 0 or length != nbytes:
            raise ReadError(
                f"{what}: its external data says {length:,} bytes at {offset:,}; "
                f"its shape needs {nbytes:,}"
            )
        if offset + nbytes > size:
            raise ReadError(
                f"{what}: its external data ends at byte {offset + nbytes:,} of {location!r}, "
                f"which has {size:,} (truncated?)"
            )
        return StorageRef(str(file), offset, nbytes, f"{location}@{offset}")

    def _external_file(self, location: str, what: str) -> tuple[Path, int]:
        found = self._sizes.get(location)
        if found is None:
            file = external_file(self.folder, location, what)
            found = self._sizes[location] = (file, file.stat().st_size)
            self.externals.append(file)
        return found


def external_file(folder: Path, location: str, what: str) -> Path:
    """The file an external data `location` names, inside `folder`; else one ReadError line."""
    parts = location.split("/")
    outside = (
        not location
        or "\x00" in location
        or "\\" in location
        or location.startswith("/")
        or location[1:2] == ":"
        or ".." in parts
    )
    if outside:
        raise ReadError(
            f"{what}: its external data location {location!r} is not a file inside the "
            "model's folder (an absolute path or '..' is refused)"
        )
    target = folder.joinpath(*[part for part in parts if part not in ("", ".")])
    try:
        resolved = target.resolve(strict=True)
        inside = resolved.is_relative_to(folder.resolve(strict=True))
        mode = os.stat(resolved).st_mode
    except FileNotFoundError:
        raise ReadError(f"{what}: its external data file {location!r} is missing") from None
    except (OSError, RuntimeError) as exc:
        raise ReadError(f"{what}: cannot read its external data {location!r}: {exc}") from None
    if not inside:
        raise ReadError(
            f"{what}: its external data {location!r} is a link out of the model's folder"
        )
    if not stat.S_ISREG(mode):
        raise ReadError(f"{what}: its external data {location!r} is not a regular file")
    return resolved


def tree_keys(tensors: dict[str, TensorRecord], model: OnnxModel) -> dict[str, TensorRecord]:
    """Initializers by the keys of the tree: their names where those nest as dotted keys (torch's
    exporter keeps the state_dict's names), else the name with '/' for each '.' (a name with an
    empty part, or under another initializer's name)."""
    keys: dict[str, TensorRecord] = {}
    renamed = 0
    for name, record in tensors.items():
        parts = name.split(".")
        nests = "" not in parts and len(parts) <= DEFAULT_LIMITS.depth
        if nests and len(parts) > 1:
            nests = not any(".".join(parts[:i]) in tensors for i in range(1, len(parts)))
        key = name if nests else name.replace(".", "/")
        while key in keys or (key != name and key in tensors):
            key += "'"
        renamed += key != name
        keys[key] = record
    if renamed:
        model.rows.append(
            ("names", f"{renamed} initializer name(s) shown with '/' for '.': they do not nest")
        )
    return keys
