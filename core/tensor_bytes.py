"""What reading a tensor's values costs, whatever the view declares, and whether its bytes are
still there.

A file can hold a view that declares far more elements than its storage has (`zeros(1).expand(
2**40)`: 600 bytes on disk, a trillion values declared). Everything that reads values (statistics,
verification) reads the distinct elements instead, which are never more than the storage holds.

A tensor memory-mapped from a file faults (SIGBUS, the whole process) when the file was truncated
under it; before its values are read, the mapped file's size is checked against the bytes it must
still hold.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.quantized import QuantizedTensor


class TensorBytesError(ModelBrowseError):
    """A tensor whose values cannot be read: its file shrank, or the view overlaps itself."""


def stored_elements(tensor: torch.Tensor) -> int:
    """How many elements the storage holds from the view's offset on."""
    size = tensor.element_size()
    return max(0, int(tensor.untyped_storage().nbytes()) // size - int(tensor.storage_offset()))


def collapse_repeats(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The view with every stride-0 dimension cut to one element, and how many times each of
    its elements stands in the original (the product of the cut sizes)."""
    if tensor.numel() == 0 or 0 not in tensor.stride():
        return tensor, 1
    shape, strides, repeat = [], [], 1
    for size, stride in zip(tensor.shape, tensor.stride(), strict=True):
        cut = stride == 0 and size > 1
        repeat *= size if cut else 1
        # A one-element dimension never steps: stride 1 keeps byte views of it possible.
        shape.append(1 if cut else size)
        strides.append(1 if cut else stride)
    return tensor.as_strided(shape, strides, tensor.storage_offset()), repeat


def overlap_reason(tensor: torch.Tensor) -> str | None:
    """Why a view's distinct values cannot be read within its storage's bytes, or None.

    After the repeats are collapsed, a view with more elements than its storage holds reads
    some elements more than once (an `as_strided` window): it is refused, never walked.
    """
    if tensor.is_meta or tensor.layout is not torch.strided:
        return None
    distinct, _ = collapse_repeats(tensor)
    stored = stored_elements(distinct)
    if distinct.numel() > stored:
        return (
            f"an overlapping view of {tensor.numel():,} elements over {stored:,} stored: "
            "values not read"
        )
    return None


# --- memory-mapped files -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mapping:
    ranges: str
    low: int
    high: int
    offset: int
    inode: int
    path: str


# One line of /proc/self/maps that maps a file: range, permissions, offset, device, inode, path.
_MAPS_LINE = re.compile(r"^(([0-9a-f]+)-([0-9a-f]+)) \S+ ([0-9a-f]+) \S+ (\d+) +(/.*)$", re.M)


def _file_mappings() -> list[_Mapping]:
    """This process's file mappings, by address (empty where /proc cannot be read). One regular
    expression over the whole table: parsing its ~500 lines one by one took 3 ms, on every move
    of the cursor onto a tensor."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            table = maps.read()
    except OSError:
        return []
    found = [
        _Mapping(ranges, int(low, 16), int(high, 16), int(offset, 16), int(inode), path)
        for ranges, low, high, offset, inode, path in _MAPS_LINE.findall(table)
    ]
    return sorted(found, key=lambda mapping: mapping.low)


def _holding(mappings: list[_Mapping], address: int) -> _Mapping | None:
    at = bisect.bisect_right([m.low for m in mappings], address) - 1
    return mappings[at] if at >= 0 and address < mappings[at].high else None


# Which mapping holds a tensor's storage, by tensor, while the tensor lives: a storage in use is
# never remapped, so /proc/self/maps (a millisecond or two to read) is read once per tensor. Keyed
# by id with a weak reference to check it: a tensor as a key would be compared with `==`.
_looked_up: dict[int, tuple[weakref.ref[torch.Tensor], int, _Mapping | None]] = {}


def _known_mapping(tensor: torch.Tensor, address: int) -> tuple[bool, _Mapping | None]:
    known = _looked_up.get(id(tensor))
    if known is not None and known[0]() is tensor and known[1] == address:
        return True, known[2]
    return False, None


def _remember(tensor: torch.Tensor, address: int, mapping: _Mapping | None) -> None:
    key = id(tensor)
    with contextlib.suppress(TypeError):  # a tensor that takes no weak reference
        _looked_up[key] = (
            weakref.ref(tensor, lambda _: _looked_up.pop(key, None)),
            address,
            mapping,
        )


def _mapped_file_size(ranges: str, inode: int, path: str) -> int | None:
    """The current size of the mapped file: through /proc/self/map_files, else through its
    path when that still names the same inode; None when neither can tell."""
    for candidate in (f"/proc/self/map_files/{ranges}", path):
        try:
            status = os.stat(candidate)
        except OSError:
            continue
        if status.st_ino == inode:
            return status.st_size
    return None


def check_file_holds(tensor: torch.Tensor, name: str = "") -> None:
    """Raise a TensorBytesError when `tensor` is mapped from a file that no longer holds its
    bytes (truncated while open); reading them would kill the process with SIGBUS."""
    check_files_hold({name: tensor})


def check_files_hold(tensors: dict[str, torch.Tensor]) -> None:
    """`check_file_holds` for many tensors, reading the process's mappings once."""
    mappings: list[_Mapping] | None = None
    seen: set[int] = set()
    for name, tensor in tensors.items():
        if isinstance(tensor, QuantizedTensor):
            tensor = tensor.packed  # what is mapped: its blocks
        if tensor.is_meta or tensor.device.type != "cpu" or tensor.layout is not torch.strided:
            continue
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if storage.nbytes() == 0 or address in seen:
            continue
        seen.add(address)
        known, mapping = _known_mapping(tensor, address)
        if not known:
            if mappings is None:
                mappings = _file_mappings()
            mapping = _holding(mappings, address)
            _remember(tensor, address, mapping)
        if mapping is None:
            continue  # not mapped from a file: nothing can shrink under it
        size = _mapped_file_size(mapping.ranges, mapping.inode, mapping.path)
        needed = mapping.offset + address + storage.nbytes() - mapping.low
        if size is not None and size < needed:
            what = f"{name}: " if name else ""
            file = Path(mapping.path.removesuffix(" (deleted)")).name
            raise TensorBytesError(
                f"{what}{file} was truncated while open ({size:,} bytes, its data reaches "
                f"{needed:,}): reopen it"
            )


MAX_EXPANDED_BYTES = 1 << 30
"""A format that stores every element (safetensors) refuses to write an expanded view past this
many bytes more than its storage holds: `zeros(1).expand(2**31)` would become 8 GiB."""


def refuse_expanded(state: dict[str, torch.Tensor], target: str) -> None:
    """Raise a TensorBytesError for the first view whose every-element copy would exceed its
    storage by more than MAX_EXPANDED_BYTES."""
    for key, tensor in state.items():
        if tensor.is_meta or tensor.layout is not torch.strided:
            continue
        declared = tensor.numel() * tensor.element_size()
        stored = tensor.untyped_storage().nbytes()
        if declared - stored > MAX_EXPANDED_BYTES:
            raise TensorBytesError(
                f"{key} is a view of {tensor.numel():,} elements over {stored:,} stored bytes: "
                f"{target} would hold {declared:,} bytes of it; save as .pt, which keeps the view"
            )
