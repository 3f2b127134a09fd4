"""torch.save files read as data: zip archives (torch 1.6+) and the legacy format before them.

Both hold a pickle of plain containers whose tensors refer to storages by persistent id; the
restricted machine runs it with `TorchHooks`, so the result is nested dicts and lists with
`TensorRecord` leaves, each located in the file (a zip member's stored bytes, or a legacy
storage's bytes after its element count) and checked against the file's size. Nothing is
imported and nothing the file names is called.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.pickles import load_pickle
from modelbrowse.core.reading.records import ITEM_SIZES, StorageRef
from modelbrowse.core.reading.torch_pickles import TorchHooks, member_storage
from modelbrowse.core.reading.zip_members import ZipMembers

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


@dataclass
class TorchContents:
    """A torch file's pickle as plain data, and the globals it names outside the allow list."""

    value: Any
    foreign: list[str] = field(default_factory=list)
    legacy: bool = False


def read_torch_zip(
    path: Path, limits: Limits = DEFAULT_LIMITS, *, scan: bool = False
) -> TorchContents:
    """A torch.save zip archive. Unless `scan`, a pickle naming a foreign global is refused
    (with `PickleRefused`); `scan` returns what it names without refusing."""
    where = str(path)
    with ZipMembers(path, where, limits) as archive:
        pickles = [n for n in archive.names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pickles:
            raise ReadError(f"{where} is a zip archive without a torch pickle (data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        order = archive.infos.get(prefix + "byteorder")
        if order is not None and archive.read(prefix + "byteorder", 16).strip() != b"little":
            raise ReadError(f"{where} was saved on a big-endian machine; it is not read")
        data = archive.read(pickles[0], limits.pickle_bytes)
        hooks = TorchHooks(where, member_storage(archive, prefix, where), limits)
        value, _ = load_pickle(data, f"{where} (data.pkl)", hooks, limits)
    return _result(path, value, hooks, scan)


class PickleRefused(ReadError):
    """The pickle names globals outside the weights-only allow list; `names` lists them."""

    def __init__(self, message: str, names: list[str]) -> None:
        super().__init__(message)
        self.names = names


def _result(
    path: Path, value: Any, hooks: TorchHooks, scan: bool, legacy: bool = False
) -> TorchContents:
    foreign = list(hooks.foreign)
    if foreign and not scan:
        raise PickleRefused(pickle_refusal(path, foreign), foreign)
    return TorchContents(value, foreign, legacy)


def pickle_refusal(path: Path, names: list[str]) -> str:
    """The one line that refuses a pickle which would import `names`."""
    return (
        f"{path} holds pickled Python objects (a whole model?), and loading it runs code from the "
        f"file{imports_text(names)}. Pass --trust-pickle only if you trust where it came from"
    )


def imports_text(names: list[str]) -> str:
    """`; it imports os.system, ...`, the file's own classes before torch's; '' for none."""
    from modelbrowse.core.units import printable

    ordered = sorted(names, key=lambda name: (name.startswith("torch."), name))
    shown = [printable(name, 80) for name in ordered[:4]]
    more = f" and {len(ordered) - 4} more" if len(ordered) > 4 else ""
    return f"; it imports {', '.join(shown)}{more}" if shown else ""


def read_torch_legacy(
    path: Path, limits: Limits = DEFAULT_LIMITS, *, scan: bool = False
) -> TorchContents:
    """A legacy (pre-1.6) torch file: magic number, protocol, system info, the main pickle,
    the list of storage keys, then each storage's element count and bytes."""
    where = str(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise ReadError(f"{where} is empty (0 bytes)")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise ReadError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        return _read_legacy(path, memoryview(mapped), size, limits, scan)
    finally:
        with contextlib.suppress(BufferError):  # a view held by an error's traceback
            mapped.close()


def _read_legacy(
    path: Path, data: memoryview, size: int, limits: Limits, scan: bool
) -> TorchContents:
    where = str(path)
    window = data[: min(size, limits.pickle_bytes)]
    magic, at = load_pickle(window, where, limits=limits)
    if magic != LEGACY_MAGIC:
        raise ReadError(f"{where} is not a torch file (its first value is not torch's number)")
    protocol, at = load_pickle(window, where, limits=limits, start=at)
    if protocol != LEGACY_PROTOCOL:
        raise ReadError(f"{where} is a legacy torch file of unknown version {protocol!r}")
    info, at = load_pickle(window, where, limits=limits, start=at)
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise ReadError(f"{where} was saved on a big-endian machine; it is not read")
    main = at
    # First pass: which storages the pickle uses, and their dtypes.
    wanted: dict[str, tuple[str, int]] = {}

    def note(key: str, dtype: str, numel: int, location: str) -> StorageRef:
        wanted.setdefault(key, (dtype, numel))
        return StorageRef(where, 0, numel * ITEM_SIZES[dtype], key, location)

    _, at = load_pickle(window, where, TorchHooks(where, note, limits), limits, start=main)
    keys, at = load_pickle(window, where, limits=limits, start=at)
    if not isinstance(keys, list) or not all(isinstance(k, (str, bytes, int)) for k in keys):
        raise ReadError(f"{where}: its list of storages is damaged")
    places = _storage_places(where, data, size, at, keys, wanted)

    # Second pass: the same pickle, its storages now located.
    def locate(key: str, dtype: str, numel: int, location: str) -> StorageRef:
        return _placed(where, places, key, dtype, numel, location)

    hooks = TorchHooks(where, locate, limits)
    value, _ = load_pickle(window, where, hooks, limits, start=main)
    return _result(path, value, hooks, scan, legacy=True)


def _storage_places(
    where: str,
    data: memoryview,
    size: int,
    at: int,
    keys: list[Any],
    wanted: dict[str, tuple[str, int]],
) -> dict[str, tuple[int, int]]:
    """Each storage's (start, element count): its bytes follow an 8-byte count."""
    places: dict[str, tuple[int, int]] = {}
    for raw in keys:
        key = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
        if key not in wanted:
            raise ReadError(f"{where}: storage {key} is listed but never used")
        dtype, _ = wanted[key]
        if at + 8 > size:
            raise ReadError(f"{where} ends before the data of storage {key} (truncated?)")
        count = int.from_bytes(data[at : at + 8], "little", signed=True)
        nbytes = count * ITEM_SIZES[dtype]
        if count < 0 or at + 8 + nbytes > size:
            raise ReadError(
                f"{where}: storage {key} declares {max(nbytes, 0):,} bytes past byte {at + 8:,} "
                f"of a file of {size:,} (truncated?)"
            )
        places[key] = (at + 8, count)
        at += 8 + nbytes
    return places


def _placed(
    where: str,
    places: dict[str, tuple[int, int]],
    key: str,
    dtype: str,
    numel: int,
    location: str,
) -> StorageRef:
    found = places.get(key)
    if found is None:
        raise ReadError(f"{where}: storage {key} has no data in the file")
    start, count = found
    if numel > count:
        raise ReadError(f"{where}: storage {key} declares {numel:,} elements but holds {count:,}")
    return StorageRef(where, start, count * ITEM_SIZES[dtype], key, location)
