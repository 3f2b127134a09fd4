"""What torch's pickles say about tensors, decoded into plain records (no torch import).

`torch.save` archives, TorchScript archives and the chunks of a distributed checkpoint write a
tensor the same way: a persistent id `('storage', torch.FloatStorage, key, location, numel)`
names a storage file in the archive, and `torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, requires_grad, hooks)` makes a view of it (`_rebuild_parameter(...)` wraps one as
a parameter). `tensor_hooks` turns those into `TensorRecord`s for `load_pickle`; any other call
stays an inert `Call` record for the caller to judge.
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

# The storage a persistent id names: (storage key, location such as 'cpu' or 'cuda:0').
StorageFor = Callable[[str, str], StorageRef]

_REBUILD_TENSOR = ("torch._utils", "_rebuild_tensor_v2")
_REBUILD_TENSOR_V1 = ("torch._utils", "_rebuild_tensor")
_REBUILD_PARAMETER = ("torch._utils", "_rebuild_parameter")
_REBUILD_PARAMETER_STATE = ("torch._utils", "_rebuild_parameter_with_state")
_REBUILD_FROM_TYPE = ("torch._tensor", "_rebuild_from_type_v2")
_TORCH_SIZE = ("torch", "Size")
# Tensor types `_rebuild_from_type_v2` may name that are plain tensors or parameters.
_PLAIN_TENSOR_TYPES = {("torch", "Tensor"), ("torch.nn.parameter", "Parameter")}


@dataclass(frozen=True)
class TypedStorage:
    """A storage as a persistent id names it: its bytes and the dtype of its elements."""

    ref: StorageRef
    dtype: str


def tensor_hooks(
    storage_for: StorageFor, where: str, limits: Limits = DEFAULT_LIMITS
) -> PickleHooks:
    """Hooks for `load_pickle` that make `TensorRecord`s of torch's tensor calls.

    `storage_for(key, location)` says where the storage named `key` lies (it raises ReadError
    when there is no such storage); its declared element count is checked against those bytes.
    Calls handled: `_rebuild_tensor_v2`, `_rebuild_tensor`, `_rebuild_parameter`,
    `_rebuild_parameter_with_state`, `_rebuild_from_type_v2` of a plain tensor type, and
    `torch.Size` (a tuple); `collections.OrderedDict` and other plain containers are made by
    the pickle machine itself. Anything else is returned as its `Call` record.
    """

    def persistent(pid: Any) -> TypedStorage:
        return _typed_storage(pid, storage_for, where)

    def call(record: Any) -> Any:
        # The machine has already made plain containers (`OrderedDict()` is a dict here).
        return _tensor_call(record, where, limits) if isinstance(record, Call) else record

    return PickleHooks(call=call, persistent=persistent)


def _typed_storage(pid: Any, storage_for: StorageFor, where: str) -> TypedStorage:
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
        raise ReadError(f"{where} refers to a persistent object that is not a tensor storage")
    _, kind, key, location, numel = pid
    dtype = _storage_dtype(kind)
    if dtype is None:
        raise ReadError(f"{where} holds a storage of an unknown type ({_named(kind)})")
    if not isinstance(key, str) or not isinstance(location, str) or len(key) > 1000:
        raise ReadError(f"{where} names a storage by something that is not a name")
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise ReadError(f"{where}: storage {key!r} declares {numel!r} elements")
    ref = storage_for(key, location[:100])
    needed = numel * ITEM_SIZES[dtype]
    if needed > ref.nbytes:
        raise ReadError(
            f"{where}: storage {key!r} declares {needed:,} bytes but holds {ref.nbytes:,}"
        )
    return TypedStorage(dataclasses.replace(ref, nbytes=needed), dtype)


def _storage_dtype(kind: Any) -> str | None:
    if not isinstance(kind, Global) or kind.module != "torch":
        return None
    if kind.name == "UntypedStorage":
        return "uint8"
    return STORAGE_DTYPES.get(kind.name)


def _named(value: Any) -> str:
    return value.dotted if isinstance(value, Global) else type(value).__name__


def _tensor_call(record: Call, where: str, limits: Limits) -> Any:
    func = record.func
    if not isinstance(func, Global):
        return record
    name = (func.module, func.name)
    args = record.args
    if name == _TORCH_SIZE and len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    if name in (_REBUILD_TENSOR, _REBUILD_TENSOR_V1) and len(args) >= 4:
        return _view(args, where, limits)
    if name in (_REBUILD_PARAMETER, _REBUILD_PARAMETER_STATE) and len(args) >= 2:
        data, requires_grad = args[0], args[1]
        if not isinstance(data, TensorRecord):
            raise ReadError(f"{where} makes a parameter of something that is not a tensor")
        return dataclasses.replace(data, requires_grad=bool(requires_grad), is_parameter=True)
    if name == _REBUILD_FROM_TYPE and len(args) >= 3:
        inner, kind, inner_args = args[0], args[1], args[2]
        if (
            isinstance(inner, Global)
            and isinstance(kind, Global)
            and (kind.module, kind.name) in _PLAIN_TENSOR_TYPES
            and isinstance(inner_args, tuple)
        ):
            return _tensor_call(Call(inner, inner_args), where, limits)
    return record


def _view(args: tuple[Any, ...], where: str, limits: Limits) -> TensorRecord:
    storage, offset, shape, stride = args[:4]
    if not isinstance(storage, TypedStorage):
        raise ReadError(f"{where} makes a tensor of something that is not a storage")
    requires_grad = bool(args[4]) if len(args) > 4 and isinstance(args[4], bool) else False
    return tensor_record(
        storage.dtype,
        shape,
        stride,
        offset,
        storage.ref,
        f"{where}: a tensor of {storage.ref.key}",
        requires_grad=requires_grad,
        limits=limits,
    )
