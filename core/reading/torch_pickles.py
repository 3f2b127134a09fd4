"""torch's pickled tensors as records: the weights-only allow list, with no torch import.

`torch.save` files (zip and legacy), TorchScript archives and the chunks of a distributed
checkpoint write a tensor the same way: a persistent id `('storage', torch.FloatStorage, key,
location, numel)` names a storage, and `torch._utils._rebuild_tensor_v2(storage, offset, size,
stride, requires_grad, hooks)` makes a view of it. `TorchHooks` turns those calls into
`TensorRecord`s and plain values; what differs between the formats is only where a storage's
bytes lie, which the caller's locator says (`member_storage` for a zip archive's `data/<key>`).
Every global outside the allow list (a model class, `os.system`, a scripted `__torch__.` class)
stays an inert record and is kept by name in `foreign`, for the caller to refuse or to read;
nothing a file names is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.pickles import Call, Global, PickleHooks
from modelbrowse.core.reading.records import (
    ITEM_SIZES,
    STORAGE_DTYPES,
    StorageRef,
    TensorRecord,
    tensor_record,
)
from modelbrowse.core.reading.zip_members import ZipMembers

# Where a storage's bytes lie: (key, dtype, element count, location such as 'cpu') -> its bytes,
# checked to hold the count declared; a ReadError when there is no such storage.
StorageLocator = Callable[[str, str, int, str], StorageRef]

# torch dtype names a pickle may name (`torch.float32`, `torch.float`), -> the record's name.
DTYPE_NAMES: dict[str, str] = {name: name for name in ITEM_SIZES} | {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "long": "int64",
    "int": "int32",
    "short": "int16",
    "cfloat": "complex64",
    "cdouble": "complex128",
    "chalf": "complex32",
}
_OTHER_DTYPES = {f"{kind}{bits}" for kind in ("int", "uint") for bits in range(1, 8)} | {
    "float4_e2m1fn_x2",
    "bits8",
    "bits16",
    "bits1x8",
    "bits2x4",
    "bits4x2",
}
_QSCHEMES = {
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
}
# The types `_rebuild_from_type_v2` may name for a tensor that is a plain tensor or parameter.
_PLAIN_TENSOR_TYPES = {"torch.Tensor", "torch.nn.parameter.Parameter"}
_TENSOR_REBUILDS = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"}
_PARAMETER_REBUILDS = {"_rebuild_parameter", "_rebuild_parameter_with_state"}
# Tensors torch's weights-only loader builds that this reader does not: skipped, named.
_UNREAD_REBUILDS = {
    "_rebuild_qtensor": "a quantized tensor",
    "_rebuild_sparse_tensor": "a sparse tensor",
    "_rebuild_nested_tensor": "a nested tensor",
    "_rebuild_meta_tensor_no_storage": "a tensor without data (meta)",
    "_rebuild_wrapper_subclass": "a tensor subclass",
    "_rebuild_device_tensor_from_numpy": "a tensor saved from numpy",
    "_rebuild_device_tensor_from_cpu_tensor": "a tensor saved for another device",
}


@dataclass(frozen=True)
class Unread:
    """A value this reader does not build (a quantized or sparse tensor): shown, not loaded."""

    what: str


@dataclass(frozen=True)
class Storage:
    """A persistent id resolved: a storage's bytes and the dtype its tensors view it as."""

    dtype: str
    ref: StorageRef


def allowed(name: Global) -> bool:
    """Whether torch's weights-only loader admits the global (and this reader knows it)."""
    module, attr = name.module, name.name
    if module in ("torch", "torch.storage"):
        return (
            attr in DTYPE_NAMES
            or attr in _OTHER_DTYPES
            or attr in _QSCHEMES
            or attr in STORAGE_DTYPES
            or attr in ("UntypedStorage", "TypedStorage", "Size", "device", "Tensor")
            or (attr.endswith("Tensor") and attr.isidentifier())
        )
    if module == "torch._utils":
        return attr in _TENSOR_REBUILDS or attr in _PARAMETER_REBUILDS or attr in _UNREAD_REBUILDS
    return (module, attr) in {
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.nn.parameter", "Parameter"),
        ("torch.serialization", "_get_layout"),
        ("collections", "OrderedDict"),
        ("collections", "Counter"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "complex"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("__builtin__", "set"),
        ("_codecs", "encode"),
    }


class TorchHooks(PickleHooks):
    """Hooks for a torch pickle; `storage(key, dtype, numel, location)` locates storages.

    Tensors, parameters, `torch.Size`, devices and plain containers become records and values;
    quantized, sparse, nested and subclassed tensors become `Unread`. A global outside the allow
    list is named in `foreign` (in the order the pickle names it) and its calls stay `Call`s."""

    def __init__(
        self,
        where: str,
        storage: StorageLocator,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(call=self._call, persistent=self._persistent, name=self._name)
        self.where = where
        self.locate = storage
        self.limits = limits
        self.foreign: dict[str, None] = {}  # globals outside the allow list, in order
        self.storages: dict[str, Storage] = {}

    def _name(self, name: Global) -> Any:
        if not allowed(name):
            self.foreign[name.dotted] = None
        return name

    def _persistent(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise ReadError(f"{self.where} refers to data it does not describe ({_kind(pid)})")
        typename = _text(pid[0])
        if typename == "module" and len(pid) > 1:  # a pickled module's class (legacy files)
            return pid[1]
        if typename != "storage" or len(pid) not in (5, 6):
            raise ReadError(f"{self.where} refers to data of an unknown kind ({typename!r})")
        storage_type, key, location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, Global):
            raise ReadError(f"{self.where}: a storage of an unknown type")
        if storage_type.name == "UntypedStorage":
            dtype = "uint8"
        elif storage_type.name in STORAGE_DTYPES:
            dtype = STORAGE_DTYPES[storage_type.name]
        else:
            raise ReadError(f"{self.where}: a storage of unknown type {storage_type.dotted}")
        if type(numel) is not int or not 0 <= numel < 1 << 62:
            raise ReadError(f"{self.where}: a storage declares {numel!r} elements")
        key = _text(key)
        if len(key) > 1000:
            raise ReadError(f"{self.where} names a storage by something that is not a name")
        found = self.storages.get(key)
        if found is None:
            ref = self.locate(key, dtype, numel, _text(location)[:100])
            found = self.storages[key] = Storage(dtype, ref)
        if view is not None:  # a legacy storage view: a slice of the root storage
            if not isinstance(view, tuple) or len(view) != 3:
                raise ReadError(f"{self.where}: a storage view is damaged")
            view_key, offset, size = view
            itemsize = ITEM_SIZES[dtype]
            if not all(type(n) is int and n >= 0 for n in (offset, size)) or (
                (offset + size) * itemsize > found.ref.nbytes
            ):
                raise ReadError(f"{self.where}: a storage view lies outside its storage")
            ref = found.ref
            return Storage(
                dtype,
                StorageRef(
                    ref.file, ref.start + offset * itemsize, size * itemsize, _text(view_key)
                ),
            )
        return found

    def _call(self, record: Any) -> Any:
        if not isinstance(record, Call):
            return record  # plain data the machine made itself (`OrderedDict()` -> {})
        func = record.func
        if not isinstance(func, Global) or not allowed(func):
            return record  # named by `_name` already, or built from something that was
        module, name = func.module, func.name
        args = record.args
        try:
            if module == "torch._utils":
                if name in _TENSOR_REBUILDS:
                    return self._tensor(name, args)
                if name in _PARAMETER_REBUILDS:
                    data = args[0]
                    if isinstance(data, TensorRecord):
                        return dataclasses.replace(
                            data, is_parameter=True, requires_grad=bool(args[1])
                        )
                    return data
                return Unread(_UNREAD_REBUILDS[name])
            if module == "torch._tensor":  # _rebuild_from_type_v2(func, new_type, args, state)
                inner = self._call(Call(args[0], tuple(args[2])))
                new_type = args[1]
                if isinstance(new_type, Global) and new_type.dotted in _PLAIN_TENSOR_TYPES:
                    return inner
                return Unread("a tensor subclass")
            if name == "Size":
                return tuple(args[0])
            if name in ("device", "_get_layout"):
                return ":".join(str(a) for a in args)
            if name == "Parameter":
                data = args[0] if args else None
                if isinstance(data, TensorRecord):
                    return dataclasses.replace(data, is_parameter=True)
                return data
            if name == "complex":
                return complex(*args)
            if name == "Counter":
                return dict(args[0]) if args else {}
        except ReadError:
            raise
        except (IndexError, TypeError, ValueError, KeyError):
            raise ReadError(
                f"{self.where}: a call of {func.dotted} has arguments it does not take"
            ) from None
        return record

    def _tensor(self, name: str, args: tuple[Any, ...]) -> TensorRecord:
        storage = args[0]
        if not isinstance(storage, Storage):
            raise ReadError(f"{self.where}: a tensor whose data is not a storage of the file")
        dtype = storage.dtype
        if name == "_rebuild_tensor_v3":
            given = args[6]
            if not isinstance(given, Global) or given.name not in DTYPE_NAMES:
                raise ReadError(f"{self.where}: a tensor of an unknown dtype")
            dtype = DTYPE_NAMES[given.name]
        requires_grad = len(args) > 4 and name != "_rebuild_tensor" and args[4] is True
        return tensor_record(
            dtype,
            args[2],
            args[3],
            args[1],  # in elements of the tensor's dtype, whatever the storage's
            storage.ref,
            f"{self.where}: a tensor of {storage.ref.key}",
            requires_grad=requires_grad,
            limits=self.limits,
        )


def member_storage(
    members: ZipMembers, prefix: str, where: str, *, file: str = "", key_prefix: str = ""
) -> StorageLocator:
    """A locator for the storages of a zip archive (`torch.save`, TorchScript, a DCP chunk):
    storage `key` is member `<prefix>data/<key>`, which must hold the bytes declared. The
    record names `file` (default `where`) and the member, after `key_prefix` (which tells apart
    chunks of one file)."""

    def locate(key: str, dtype: str, numel: int, location: str) -> StorageRef:
        name = f"{prefix}data/{key}"
        found = members.location(name)
        nbytes = numel * ITEM_SIZES[dtype]
        if nbytes > found.nbytes:
            raise ReadError(
                f"{where}: storage {key} declares {nbytes:,} bytes but its member holds "
                f"{found.nbytes:,}"
            )
        return StorageRef(file or where, found.start, nbytes, key_prefix + name, location)

    return locate


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, (str, int)):
        return str(value)
    raise ReadError(f"a storage key or location is a {type(value).__name__}, not text")


def _kind(value: Any) -> str:
    return type(value).__name__
