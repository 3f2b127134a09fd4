"""`torch.distributed.checkpoint` folders read as data: `.metadata` and the tensor chunks.

torch reads `.metadata` with plain `pickle.load`, which runs whatever the file names. Here it goes
through the restricted pickle machine, and only the records torch writes are accepted (`Metadata`,
`TensorStorageMetadata`, `_StorageInfo`, ... as inert calls, dtypes as `torch.float32` globals);
a file naming anything else is refused. Each tensor chunk is a `torch.save` archive written at an
offset of a `.distcp` file; it is read with the same machine and its storage located for mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.pickles import Call, Global, PickleHooks, globals_in, load_pickle
from modelbrowse.core.reading.records import ITEM_SIZES, TensorRecord
from modelbrowse.core.reading.records import sizes as checked_sizes
from modelbrowse.core.reading.torch_pickles import TorchHooks, member_storage
from modelbrowse.core.reading.zip_members import ZipMembers

_DCP = "torch.distributed.checkpoint."
# Module prefixes a DCP `.metadata` names (its records, torch dtypes and sizes, a pathlib path).
_ALLOWED = ("torch", "pathlib", "collections", "builtins")


@dataclass(frozen=True)
class DcpChunk:
    """One saved piece of a tensor: where it sits in the tensor and where its bytes are."""

    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: str  # relative to the folder
    start: int
    length: int


@dataclass
class DcpTensor:
    dtype: str
    shape: tuple[int, ...]
    chunks: list[DcpChunk] = field(default_factory=list)


@dataclass
class DcpMetadata:
    """Tensors by key, in the order saved, and the keys of the other (pickled) entries."""

    tensors: dict[str, DcpTensor] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)


def read_dcp_metadata(folder: Path, limits: Limits = DEFAULT_LIMITS) -> DcpMetadata:
    """The folder's `.metadata` as records, or a one-line ReadError; nothing in it is run."""
    path = folder / ".metadata"
    where = str(path)
    try:
        size = path.stat().st_size
        if size > limits.pickle_bytes:
            raise ReadError(f"{where} is {size:,} bytes; at most {limits.pickle_bytes:,} are read")
        data = path.read_bytes()
    except OSError as exc:
        raise ReadError(f"cannot read {where}: {exc.strerror or exc}") from None
    root, _ = load_pickle(data, where, PickleHooks(call=_size_as_tuple), limits)
    for name in globals_in(root, limits):
        if name.partition(".")[0] not in _ALLOWED:
            raise ReadError(
                f"{where} names {name}, which torch.distributed.checkpoint metadata never holds; "
                "refused (nothing in it was run)"
            )
    state = _state_of(root, "metadata.Metadata", where)
    storage = _storage_index(state.get("storage_data"), where)
    entries = state.get("state_dict_metadata")
    if not isinstance(entries, dict):
        raise ReadError(f"{where} has no state_dict_metadata; not a distributed checkpoint")
    metadata = DcpMetadata()
    for key, entry in entries.items():
        if not isinstance(key, str):
            raise ReadError(f"{where} has a key that is not text")
        if isinstance(entry, Call) and entry.name == _DCP + "metadata.BytesStorageMetadata":
            metadata.others.append(key)
            continue
        metadata.tensors[key] = _tensor(key, entry, storage, where)
    return metadata


def _size_as_tuple(record: Any) -> Any:
    if (
        isinstance(record, Call)
        and isinstance(record.func, Global)
        and record.func.dotted == "torch.Size"
        and len(record.args) == 1
        and isinstance(record.args[0], (tuple, list))
    ):
        return tuple(record.args[0])
    return record


def _state_of(value: Any, kind: str, where: str) -> dict[Any, Any]:
    if (
        not isinstance(value, Call)
        or value.name != _DCP + kind
        or not isinstance(value.state, dict)
    ):
        what = value.name if isinstance(value, Call) else type(value).__name__
        raise ReadError(
            f"{where} holds a {what} where torch.distributed.checkpoint writes a "
            f"{kind.rpartition('.')[2]}; not readable"
        )
    return value.state


def _sizes(value: Any, where: str, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple):  # torch.Size and tuples only, as torch writes them
        raise ReadError(f"{where}: {what} is not a list of sizes")
    return checked_sizes(value, where, what)


def _storage_index(value: Any, where: str) -> dict[tuple[str, tuple[int, ...]], dict[Any, Any]]:
    """(key, chunk offsets) -> the `_StorageInfo` state that says where the chunk's bytes are."""
    if not isinstance(value, dict):
        raise ReadError(f"{where} has no storage_data; not readable")
    found: dict[tuple[str, tuple[int, ...]], dict[Any, Any]] = {}
    for index, info in value.items():
        spot = _state_of(index, "metadata.MetadataIndex", where)
        fqn, offset = spot.get("fqn"), spot.get("offset")
        if not isinstance(fqn, str):
            raise ReadError(f"{where}: a storage entry has no key")
        if offset is None:
            continue  # a pickled (non-tensor) entry: never read
        found[(fqn, _sizes(offset, where, f"the offset of {fqn!r}"))] = _state_of(
            info, "filesystem._StorageInfo", where
        )
    return found


def _tensor(
    key: str,
    entry: Any,
    storage: dict[tuple[str, tuple[int, ...]], dict[Any, Any]],
    where: str,
) -> DcpTensor:
    state = _state_of(entry, "metadata.TensorStorageMetadata", where)
    properties = state.get("properties")
    dtype = _dtype(properties.state if isinstance(properties, Call) else None)
    if dtype is None:
        raise ReadError(f"{where}: {key!r} has no dtype this reader knows")
    shape = _sizes(state.get("size"), where, f"the size of {key!r}")
    tensor = DcpTensor(dtype, shape)
    chunks = state.get("chunks")
    if not isinstance(chunks, list):
        raise ReadError(f"{where}: {key!r} lists no chunks")
    for chunk in chunks:
        spot = _state_of(chunk, "metadata.ChunkStorageMetadata", where)
        offsets = _sizes(spot.get("offsets"), where, f"a chunk of {key!r}")
        sizes = _sizes(spot.get("sizes"), where, f"a chunk of {key!r}")
        if (
            len(offsets) != len(shape)
            or len(sizes) != len(shape)
            or any(o + s > n for o, s, n in zip(offsets, sizes, shape, strict=True))
        ):
            raise ReadError(f"{where}: a chunk of {key!r} lies outside its size {shape}")
        info = storage.get((key, offsets))
        if info is None:
            raise ReadError(f"{where}: a chunk of {key!r} has no storage entry")
        tensor.chunks.append(DcpChunk(offsets, sizes, *_place(info, key, where)))
    return tensor


def _dtype(state: Any) -> str | None:
    """`TensorProperties` state: a tuple starting with the dtype (torch 2.1+), or a dict."""
    dtype = state[0] if isinstance(state, tuple) and state else None
    if isinstance(state, dict):
        dtype = state.get("dtype")
    if isinstance(dtype, Global) and dtype.module == "torch" and dtype.name in ITEM_SIZES:
        return dtype.name
    return None


def _place(info: dict[Any, Any], key: str, where: str) -> tuple[str, int, int]:
    name, start, length = info.get("relative_path"), info.get("offset"), info.get("length")
    if info.get("transform_descriptors"):
        raise ReadError(
            f"{where}: {key!r} is stored through transforms "
            f"({', '.join(map(str, info['transform_descriptors']))}) that are not read here"
        )
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
    ):
        raise ReadError(f"{where}: {key!r} names a data file outside its folder; refused")
    if not (_count(start) and _count(length)):
        raise ReadError(f"{where}: {key!r} has no byte range")
    return name, start, length


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_chunk(
    folder: Path, key: str, tensor: DcpTensor, chunk: DcpChunk, limits: Limits = DEFAULT_LIMITS
) -> TensorRecord:
    """The chunk's tensor record: its `torch.save` archive read in place, storage located."""
    path = folder / chunk.file
    where = f"{path} at byte {chunk.start:,} ({key})"
    try:
        with path.open("rb") as handle:
            handle.seek(chunk.start)
            head = handle.read(4)
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head != b"PK\x03\x04":
        raise ReadError(
            f"{where} is not a torch.save chunk (a safetensors-format checkpoint?); "
            "only torch.save chunks are read"
        )
    with ZipMembers(path, where, limits, span=(chunk.start, chunk.length)) as members:
        pickles = [n for n in members.names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ReadError(f"{where} is a torch.save chunk without one data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        storage = member_storage(
            members, prefix, where, file=str(path), key_prefix=f"{chunk.start}:"
        )
        data = members.read(pickles[0], limits.pickle_bytes)
        record, _ = load_pickle(data, where, TorchHooks(where, storage, limits), limits)
    if not isinstance(record, TensorRecord):
        raise ReadError(f"{where} holds no tensor")
    if record.dtype != tensor.dtype or record.shape != chunk.sizes:
        raise ReadError(
            f"{where} holds a {record.dtype} tensor of {record.shape}; the metadata says "
            f"{tensor.dtype} of {chunk.sizes}"
        )
    return record
