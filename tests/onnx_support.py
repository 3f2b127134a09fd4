"""ONNX files for tests: a tiny model exported by torch, and hand-made models whose initializers
say whatever a test needs (external data anywhere, lying sizes)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper
from torch import nn


class Tiny(nn.Module):
    """Two linear layers under a block, so the initializers nest as `block.fc1.weight`."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential()
        self.block.add_module("fc1", nn.Linear(4, 8))
        self.block.add_module("act", nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x))  # type: ignore[no-any-return]


def export_tiny(path: Path, *, external: bool = False) -> nn.Module:
    """`Tiny` exported by `torch.onnx.export` (TorchScript exporter: quick, keeps names); with
    `external`, its initializers saved to `weights.data` beside it."""
    torch.manual_seed(0)
    model = Tiny().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(2, 4),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    if external:
        proto = onnx.load(str(path))
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="weights.data",
            size_threshold=0,
        )
    return model


def external_tensor(
    name: str,
    location: str,
    *,
    offset: int = 0,
    length: int | None = None,
    dims: Sequence[int] = (2, 2),
) -> TensorProto:
    """A float32 initializer whose values the model says lie in `location`."""
    tensor = TensorProto()
    tensor.name = name
    tensor.data_type = TensorProto.FLOAT
    tensor.dims.extend(dims)
    tensor.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def model_bytes(*initializers: TensorProto) -> bytes:
    """A one-node model (Identity of the first initializer) holding `initializers`."""
    first = initializers[0]
    node = helper.make_node("Identity", [first.name], ["y"])
    output = helper.make_tensor_value_info("y", first.data_type, list(first.dims))
    graph = helper.make_graph([node], "g", [], [output], initializer=list(initializers))
    data: bytes = helper.make_model(graph, producer_name="tests").SerializeToString()
    return data


def write_model(path: Path, *initializers: TensorProto) -> Path:
    """The model's bytes as they are: nothing resolves or rewrites its external data."""
    path.write_bytes(model_bytes(*initializers))
    return path
