"""Safetensors files: headers from the reading layer, data mapped when a value is needed."""

from __future__ import annotations

from pathlib import Path

from modelbrowse.core.reading.safetensors_header import read_header
from modelbrowse.core.sources.files import Checkpoint
from modelbrowse.core.sources.tensor_mapping import FileMaps, tensors_of


def open_safetensors(paths: list[Path], map_location: str) -> Checkpoint:
    """One or more safetensors files, privately mapped; the header metadata becomes information.

    Each tensor is a view of one copy-on-write map of its file: nothing is read until its data
    is used, and writes to it stay in this process, never in the file.
    """
    checkpoint = Checkpoint(paths[0], "safetensors", files=list(paths))
    maps = FileMaps()
    for path in paths:
        header = read_header(path)
        tensors = tensors_of(header.tensors, map_location, maps)
        checkpoint.tensors.update(tensors)
        for alias, key in header.aliases.items():
            if alias not in checkpoint.tensors:
                checkpoint.tensors[alias] = tensors[key]
        rows = [(f"metadata {name}", value) for name, value in header.metadata.items()]
        for row in rows + header.info:
            if row not in checkpoint.info:  # shards repeat it
                checkpoint.info.append(row)
    return checkpoint
