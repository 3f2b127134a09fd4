"""Plain records of what a weight file holds: tensors as dtype, shape, stride and byte location.

Readers produce these without torch; `core.tensor_mapping` (with torch) maps a record's bytes
when its values are needed. A record is checked when it is made: its view lies inside its
storage, and its storage inside the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.quantization import Quantization

# dtype name (as torch names it, without `torch.`) -> bytes per element.
ITEM_SIZES: dict[str, int] = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "complex128": 16,
    "complex64": 8,
    "complex32": 4,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint64": 8,
    "uint32": 4,
    "uint16": 2,
    "uint8": 1,
    "bool": 1,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "float8_e4m3fnuz": 1,
    "float8_e5m2fnuz": 1,
    "float8_e8m0fnu": 1,
    "qint8": 1,
    "quint8": 1,
    "qint32": 4,
}

# The names of torch's legacy typed storages (`torch.FloatStorage`) -> dtype.
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "Float8_e4m3fnStorage": "float8_e4m3fn",
    "Float8_e5m2Storage": "float8_e5m2",
    "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32",
}


@dataclass(frozen=True, slots=True)
class StorageRef:
    """Where a storage's bytes are: `nbytes` bytes from byte `start` of `file`."""

    file: str
    start: int
    nbytes: int
    key: str  # the storage's name in its file (`archive/data/0`), for messages and sharing
    device: str = "cpu"  # where it was saved; data is always mapped on the CPU first


@dataclass(frozen=True, slots=True)
class TensorRecord:
    """A tensor as a view of a storage: `offset` and `stride` in elements of `dtype`.

    A block-quantized weight (GGUF's Q4_K) is its packed bytes (`uint8`, one dimension) with
    `quantization` saying what they stand for: its logical shape, count and scheme.
    """

    dtype: str
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    storage: StorageRef
    requires_grad: bool = False
    is_parameter: bool = False
    quantization: Quantization | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return ITEM_SIZES[self.dtype]

    @property
    def nbytes(self) -> int:
        """What the tensor's values take once made contiguous."""
        return self.numel * self.itemsize

    def extent(self) -> int:
        """Elements of the storage the view reaches, from its offset (0 for an empty view)."""
        shape = self.shape
        if len(shape) == 1:  # the common cases without a generator
            return shape[0] and 1 + (shape[0] - 1) * self.stride[0]
        if not shape:
            return 1
        if 0 in shape:
            return 0
        return 1 + sum((n - 1) * s for n, s in zip(shape, self.stride, strict=True))


def tensor_record(
    dtype: str,
    shape: Any,
    stride: Any,
    offset: Any,
    storage: StorageRef,
    where: str,
    *,
    requires_grad: bool = False,
    is_parameter: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> TensorRecord:
    """A checked record: integer sizes, a view inside its storage; else a one-line ReadError."""
    if dtype not in ITEM_SIZES:
        raise ReadError(f"{where}: unknown dtype {dtype!r}")
    shape_t = sizes(shape, where, "its shape", limits)
    stride_t = sizes(stride, where, "its stride", limits)
    if len(stride_t) != len(shape_t):
        raise ReadError(f"{where}: its stride {stride_t} does not match its shape {shape_t}")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise ReadError(f"{where}: its storage offset {offset!r} is not a count")
    record = TensorRecord(
        dtype, shape_t, stride_t, offset, storage, bool(requires_grad), is_parameter
    )
    reach = (offset + record.extent()) * record.itemsize if record.numel else 0
    if reach > storage.nbytes:
        raise ReadError(
            f"{where}: its view reaches {reach:,} bytes of a storage of {storage.nbytes:,}"
        )
    return record


def sizes(value: Any, where: str, what: str, limits: Limits = DEFAULT_LIMITS) -> tuple[int, ...]:
    """A shape, stride or offset list from a file: at most `limits.tensor_rank` counts, each
    a plain non-negative int below 2**62; else a one-line ReadError naming `what`."""
    if not isinstance(value, (tuple, list)) or len(value) > limits.tensor_rank:
        raise ReadError(f"{where}: {what} is not a list of sizes")
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 62 for n in value):
        raise ReadError(f"{where}: {what} {tuple(value)!r} is not a list of sizes")
    return tuple(value)
