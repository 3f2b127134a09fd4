"""GGUF files and split sets opened for the tree: records from the reading layer, data mapped.

A tensor of a plain type (F32, F16, BF16, integers) is a view of the mapped file like any other;
a block-quantized one (Q4_K, Q8_0, ...) is a `QuantizedTensor` over its mapped blocks, which the
`gguf` package dequantizes when statistics need values (the header is never parsed by it).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch

from modelbrowse.core.errors import UsageError
from modelbrowse.core.quantized import Decode, QuantizedTensor
from modelbrowse.core.reading.ggml_types import GGML_TYPES
from modelbrowse.core.reading.gguf import read_gguf
from modelbrowse.core.reading.gguf_metadata import gguf_format, gguf_rows
from modelbrowse.core.sources.files import Checkpoint
from modelbrowse.core.sources.tensor_mapping import FileMaps

INSTALL_HINT = "pip install 'modelbrowse[gguf]'"
EDIT_REFUSAL = (
    "a GGUF file is read-only here: its weights are quantized, and an edit would need them "
    "re-quantized (open the model it was converted from to edit it)"
)


def open_gguf(path: Path, map_location: str) -> Checkpoint:
    """A GGUF file, or the split set it is part of, as a checkpoint of mapped tensors."""
    if map_location != "cpu":
        raise UsageError(f"--device {map_location}: a GGUF file is read on the CPU")
    contents = read_gguf(path)
    checkpoint = Checkpoint(path, gguf_format(contents), files=list(contents.files))
    checkpoint.info = gguf_rows(contents)
    if any(record.quantization is not None for record in contents.tensors.values()):
        checkpoint.read_only = EDIT_REFUSAL
        checkpoint.quantized = True
    maps = FileMaps()
    for name, record in contents.tensors.items():
        tensor = maps.tensor(record)
        quantization = record.quantization
        if quantization is not None:
            tensor = QuantizedTensor(tensor, quantization, _decoder(quantization.scheme))
        checkpoint.tensors[name] = tensor
    return checkpoint


def _decoder(scheme: str) -> Callable[[], Decode | str]:
    return lambda: gguf_decoder(scheme)


@cache
def gguf_decoder(scheme: str) -> Decode | str:
    """The `gguf` package's dequantization of `scheme`, or why there is none."""
    try:
        import numpy as np
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize
    except ImportError:
        return f"statistics of {scheme} weights need the gguf package: {INSTALL_HINT}"
    unsupported = f"dequantization of {scheme} is not supported (by the gguf package installed)"
    qtype = GGMLQuantizationType.__members__.get(scheme)
    if qtype is None:
        return unsupported
    ggml = next(t for t in GGML_TYPES.values() if t.name == scheme)
    try:
        dequantize(np.zeros((1, ggml.type_size), dtype=np.uint8), qtype)
    except NotImplementedError:
        return unsupported

    def decode(blocks: torch.Tensor) -> torch.Tensor:
        values = dequantize(blocks.numpy(), qtype)
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))

    return decode
