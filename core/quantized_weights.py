"""A quantized layer's logical weight as the node index holds it: one node, not its pieces.

`QuantizedWeight` answers what the tree, the detail pane and the totals read of a tensor (shape,
dtype, numel, requires_grad) for the logical weight: a GPTQ 4096x4096 `q_proj.weight` has shape
(4096, 4096) and 16.8M elements, and its size is the bytes its pieces take. Its pieces are the
reading layer's records before torch is imported and tensors after; the values come from
`core.dequantize`. Torch-free.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from modelbrowse.core.reading.quantization import Quantization
from modelbrowse.core.reading.quantized_layouts import (
    QuantizedKeys,
    QuantizedLayout,
    ReadSmall,
    describe_record,
    find_quantized,
    read_quant_config,
    record_bytes,
)
from modelbrowse.core.reading.records import ITEM_SIZES, TensorRecord


class QuantizedWeight:
    """The logical weight of a quantized layer; frozen (its pieces are not trainable)."""

    __slots__ = ("count", "layout", "nbytes", "pieces")
    device = "cpu"
    requires_grad = False
    is_parameter = False

    def __init__(self, layout: QuantizedLayout, pieces: dict[str, Any], nbytes: int) -> None:
        self.layout = layout
        self.pieces = pieces  # role -> record or tensor
        self.nbytes = nbytes  # the bytes of its pieces, as stored
        self.count = math.prod(layout.quantization.logical_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.layout.quantization.logical_shape

    @property
    def dtype(self) -> str:
        return self.layout.quantization.logical_dtype

    @property
    def quantization(self) -> Quantization:
        """The shared record of how it is stored (`core.nodes.quantization_of` reads it)."""
        return self.layout.quantization

    @property
    def is_meta(self) -> bool:
        return any(getattr(p, "is_meta", False) for p in self.pieces.values())

    def numel(self) -> int:
        return self.count

    def element_size(self) -> int:
        """What one value takes once dequantized (the stored bits are in `bits_per_weight`)."""
        return ITEM_SIZES.get(self.dtype, 2)

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per logical weight, scales and zeros included."""
        return self.nbytes * 8 / self.count if self.count else 0.0

    @property
    def keys(self) -> dict[str, str]:
        """Role -> the key of each piece, as the file names it."""
        return self.layout.pieces


def weight_from_records(
    layout: QuantizedLayout, records: dict[str, TensorRecord]
) -> QuantizedWeight:
    """The logical weight of `layout`, its pieces taken from `records` (key -> record)."""
    pieces = {role: records[key] for role, key in layout.pieces.items()}
    return QuantizedWeight(layout, pieces, sum(r.nbytes for r in pieces.values()))


def quantized_records(records: dict[str, TensorRecord], folder: Path) -> QuantizedKeys:
    """The quantized layers among a structure's records, with `folder`'s quantization config."""
    config, rows = read_quant_config(folder)

    def read_small(key: str, limit: int) -> bytes:
        return record_bytes(records[key], limit)

    found = find_quantized(records, describe_record, config, read_small)
    found.rows[:0] = rows
    return found


def config_folder(path: Path) -> Path:
    """Where the quantization config of a file or folder is looked for."""
    return path if path.is_dir() else path.parent


__all__ = [
    "QuantizedKeys",
    "QuantizedWeight",
    "ReadSmall",
    "config_folder",
    "quantized_records",
    "weight_from_records",
]
