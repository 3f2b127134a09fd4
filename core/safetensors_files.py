"""Safetensors files opened as memory-mapped views: nothing is read until a value is needed."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, cast

import torch

from modelbrowse.core.checkpoints import Checkpoint, first_line
from modelbrowse.core.errors import SourceError


def open_safetensors(paths: list[Path], map_location: str) -> Checkpoint:
    """One or more safetensors files, memory-mapped; the header metadata becomes information."""
    from safetensors import safe_open

    from modelbrowse.core.saving import ALIASES_KEY

    checkpoint = Checkpoint(paths[0], "safetensors", files=list(paths))
    for path in paths:
        try:
            with safe_open(str(path), framework="pt", device=map_location) as handle:  # type: ignore[no-untyped-call]
                metadata = handle.metadata() or {}
                mapped = _map_safetensors(path) if map_location == "cpu" else {}
                for key in handle.keys():  # noqa: SIM118 - a safe_open handle is not a dict
                    tensor = mapped.get(key)
                    checkpoint.tensors[key] = handle.get_tensor(key) if tensor is None else tensor
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise SourceError(f"cannot read {path} (safetensors): {first_line(exc)}") from None
        aliases = metadata.pop(ALIASES_KEY, None)
        if aliases:
            for alias, key in json.loads(aliases).items():
                if key in checkpoint.tensors:
                    checkpoint.tensors[alias] = checkpoint.tensors[key]
        for name, value in metadata.items():
            if (f"metadata {name}", value) not in checkpoint.info:  # shards repeat it
                checkpoint.info.append((f"metadata {name}", value))
    return checkpoint


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


def _map_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every aligned tensor as a view of one private memory map of the file.

    `get_tensor` reads each tensor (and the kernel's readahead around it) when called: 3.5 GiB
    and seconds for a 7B model before the first screen. A view reads nothing until its data is
    used, and writes to it stay in this process (copy-on-write), never in the file. Tensors the
    map cannot hold (unaligned, unknown dtype) are left to `get_tensor`.
    """
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header: dict[str, Any] = json.loads(handle.read(length))
    size = path.stat().st_size
    if size == 0:
        return {}
    storage = cast(
        torch.UntypedStorage, torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    )
    tensors = {}
    for key, entry in header.items():
        dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype")) if key != "__metadata__" else None
        if dtype is None:
            continue
        begin = 8 + length + int(entry["data_offsets"][0])
        if begin % dtype.itemsize:
            continue
        shape = [int(n) for n in entry["shape"]]
        strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]  # row-major
        tensors[key] = torch.empty(0, dtype=dtype).set_(
            storage, begin // dtype.itemsize, shape, strides
        )
    return tensors
