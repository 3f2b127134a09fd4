"""One output file written as its tensors come, each written once and then dropped.

Every key's shape and dtype is known before any value is: a safetensors header is written
first, then the data in the same order; a torch.save archive gets its pickle first (tensors
that stand for storages written later) and then one record per storage, as `torch.save`
itself orders them. Either way nothing but the tensor being written is held.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from modelbrowse.core.merge.plan import MergeError
from modelbrowse.core.reading.safetensors_header import ALIASES_KEY, SAFETENSORS_DTYPES

Entry = tuple[str, tuple[int, ...], torch.dtype]
Tensors = Iterable[tuple[str, torch.Tensor]]
_SAFETENSORS_NAMES = {name: code for code, name in SAFETENSORS_DTYPES.items()}
# A safetensors header is padded with spaces so that the data starts 8-byte aligned.
ALIGN = 8


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes, without a copy where it is contiguous."""
    flat = tensor.detach().contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return flat.view(torch.uint8).numpy().data


def write_safetensors(
    path: Path, entries: list[Entry], aliases: dict[str, str], tensors: Tensors
) -> int:
    """A safetensors file of `entries`, their values from `tensors` in the same order; tied
    keys recorded as the app records them (`modelbrowse.aliases`). Returns the bytes written."""
    header: dict[str, Any] = {}
    metadata = {"format": "pt"}
    if aliases:
        metadata[ALIASES_KEY] = json.dumps(aliases, sort_keys=True)
    header["__metadata__"] = metadata
    offset = 0
    for key, shape, dtype in entries:
        code = _SAFETENSORS_NAMES.get(str(dtype).removeprefix("torch."))
        if code is None:
            raise MergeError(f"{key}: safetensors has no dtype {dtype}")
        size = _nbytes(shape, dtype)
        header[key] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(len(text) + 8) % ALIGN)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        _write_values(handle, entries, tensors)
    return 8 + len(text) + offset


def write_torch(path: Path, entries: list[Entry], aliases: dict[str, str], tensors: Tensors) -> int:
    """A torch.save archive of a state_dict (aliases share their key's storage, as a tied
    model's do), readable by `torch.load(weights_only=True)`. Returns the data bytes written."""
    storages = {
        key: _Storage(str(number), dtype, shape)
        for number, (key, shape, dtype) in enumerate(entries)
    }
    state: dict[str, _Tensor] = {key: _Tensor(storages[key]) for key, _, _ in entries}
    for alias, key in aliases.items():
        state[alias] = state[key]
    pickled = io.BytesIO()
    _Pickler(pickled, protocol=2).dump(collections.OrderedDict(state))
    data = pickled.getvalue()
    written = 0
    with torch.serialization._open_zipfile_writer(str(path)) as archive:
        archive.write_record("data.pkl", data, len(data))
        archive.write_record(".format_version", "1", 1)
        archive.write_record("byteorder", "little", len("little"))
        expected = iter(entries)
        for key, tensor in tensors:
            name, shape, dtype = next(expected)
            _check(key, tensor, name, shape, dtype)
            storage = tensor.detach().contiguous()
            if storage.untyped_storage().nbytes() != storage.numel() * storage.element_size():
                storage = storage.clone()
            nbytes = storage.numel() * storage.element_size()
            archive.write_record(f"data/{storages[key].key}", storage.untyped_storage(), nbytes)
            written += nbytes
        if next(expected, None) is not None:
            raise MergeError("the merge ended before every tensor was written")
    return written


def _write_values(handle: Any, entries: list[Entry], tensors: Tensors) -> None:
    expected = iter(entries)
    for key, tensor in tensors:
        name, shape, dtype = next(expected)
        _check(key, tensor, name, shape, dtype)
        handle.write(tensor_bytes(tensor))
    if next(expected, None) is not None:
        raise MergeError("the merge ended before every tensor was written")


def _check(
    key: str, tensor: torch.Tensor, name: str, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    if key != name or tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
        raise MergeError(f"{key}: came out as {tuple(tensor.shape)} {tensor.dtype}, not as planned")


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    count = 1
    for n in shape:
        count *= n
    return count * dtype.itemsize


class _Storage:
    """A storage written later: its record name, dtype and element count."""

    def __init__(self, key: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = _nbytes(shape, dtype) // dtype.itemsize
        self.shape = shape


class _Tensor:
    """Pickles as torch.save pickles a contiguous tensor of its storage."""

    def __init__(self, storage: _Storage) -> None:
        self.storage = storage

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        shape = self.storage.shape
        stride = tuple(torch.empty(shape, device="meta").stride())
        args: tuple[Any, ...] = (
            self.storage,
            0,
            torch.Size(shape),
            stride,
            False,
            collections.OrderedDict(),
        )
        return (torch._utils._rebuild_tensor_v2, args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            kind = torch.storage._dtype_to_storage_type_map()[obj.dtype]
            return ("storage", getattr(torch, kind), obj.key, "cpu", obj.numel)
        return None
