"""ONNX models as a read-only source: the initializers as a tree of tensors, the graph at the root.

The reading layer locates every initializer's bytes (`core.reading.onnx_model`), in the model
or in external data files beside it; they are mapped here like a safetensors file's.
"""

from __future__ import annotations

from pathlib import Path

from modelbrowse.core.reading.onnx_model import FORMAT, read_onnx
from modelbrowse.core.sources.files import Checkpoint
from modelbrowse.core.sources.tensor_mapping import FileMaps, tensors_of

READ_ONLY = (
    "an ONNX model is shown read-only: nothing in it can be edited or written here "
    "(edit the PyTorch model it was exported from)"
)


def open_onnx(path: Path, map_location: str) -> Checkpoint:
    """The model's initializers, mapped (nothing is read until a value is needed)."""
    model = read_onnx(path)
    checkpoint = Checkpoint(path, FORMAT, info=list(model.rows), files=list(model.files))
    checkpoint.read_only = READ_ONLY
    checkpoint.tensors = tensors_of(model.tensors, map_location, FileMaps())
    return checkpoint
