"""A distributed checkpoint's tensors from their chunks, mapped from the shard files."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.distributed import DcpTensor, read_chunk
from modelbrowse.core.sources.tensor_mapping import FileMaps, torch_dtype


def chunked_tensor(
    folder: Path, key: str, entry: DcpTensor, maps: FileMaps, device: str = "cpu"
) -> torch.Tensor:
    """One tensor: its only chunk as a view of the file, or its chunks copied into place."""
    whole = tuple(0 for _ in entry.shape)
    if len(entry.chunks) == 1 and entry.chunks[0].offsets == whole:
        chunk = entry.chunks[0]
        if chunk.sizes == entry.shape:
            return maps.tensor(read_chunk(folder, key, entry, chunk), device)
    if sum(math.prod(chunk.sizes) for chunk in entry.chunks) != math.prod(entry.shape):
        raise ReadError(f"{folder}: the chunks of {key!r} do not cover its size {entry.shape}")
    tensor = torch.empty(entry.shape, dtype=torch_dtype(entry.dtype), device=device)
    for chunk in entry.chunks:
        part = maps.tensor(read_chunk(folder, key, entry, chunk))
        target = tensor
        for dim, (start, size) in enumerate(zip(chunk.offsets, chunk.sizes, strict=True)):
            target = target.narrow(dim, start, size)
        target.copy_(part)
    return tensor
