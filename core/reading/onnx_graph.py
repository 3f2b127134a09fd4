"""An ONNX model's graph described for its root: producer, opsets, inputs and outputs with their
shapes, and how many nodes of each operator.

The `onnx` package parses the model here (an extra: `pip install 'modelbrowse[onnx]'`), from
a copy the reading layer made without the initializers' values and bounded in size first.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from modelbrowse.core.errors import first_line
from modelbrowse.core.reading.limits import Limits, ReadError
from modelbrowse.core.reading.onnx_model import INSTALL_HINT, ONNX_DTYPES

Row = tuple[str, str]
# Rows of one kind shown at most (an exported language model has a hundred inputs).
MAX_ROWS = 16
MAX_OP_ROWS = 40
VALUE_LIMIT = 120


def describe_graph(
    stripped: bytes, initializers: set[str], where: str, limits: Limits
) -> list[Row]:
    """The root's rows for a model (`stripped` of its initializers, whose names are given)."""
    if len(stripped) > limits.onnx_graph_bytes:  # checked before the copy was made, and again
        raise ReadError(f"{where}: its graph is larger than {limits.onnx_graph_bytes:,} bytes")
    try:
        import onnx
    except ImportError:
        raise ReadError(f"reading an ONNX model needs the onnx package: {INSTALL_HINT}") from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(stripped)
    except RecursionError:
        raise ReadError(f"{where}: it is nested too deeply") from None
    except Exception as exc:  # protobuf's DecodeError, and whatever else its parser raises
        raise ReadError(f"{where}: {first_line(exc) or type(exc).__name__}") from None
    rows: list[Row] = []
    producer = " ".join(_short(p) for p in (model.producer_name, model.producer_version) if p)
    rows.append(("producer", _short(producer or "not named")))
    rows.append(("IR version", str(model.ir_version)))
    opsets = [f"{_short(o.domain or 'ai.onnx', 60)} {o.version}" for o in model.opset_import]
    rows.append(("opset", _short(", ".join(opsets) or "none")))
    graph = model.graph
    if graph.name:
        rows.append(("graph", _short(graph.name)))
    inputs = [v for v in graph.input if v.name not in initializers]
    rows += _values("input", inputs)
    rows += _values("output", list(graph.output))
    counts = Counter(
        _short(f"{_short(node.domain, 60)}.{_short(node.op_type, 60)}")
        if node.domain not in ("", "ai.onnx")
        else _short(node.op_type, 60)
        for node in graph.node
    )
    rows.append(("nodes", f"{len(graph.node):,} ({len(counts)} operator types)"))
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    rows += [(f"op {_short(op, 60)}", f"{count:,}") for op, count in ordered[:MAX_OP_ROWS]]
    if len(ordered) > MAX_OP_ROWS:
        rows.append(("op …", f"{len(ordered) - MAX_OP_ROWS} more operators"))
    if model.functions:
        names = ", ".join(_short(f.name, 40) for f in model.functions[:8])
        rows.append(("functions", _short(f"{len(model.functions)}: {names}")))
    for prop in list(model.metadata_props)[:MAX_ROWS]:
        rows.append((f"metadata {_short(prop.key, 60)}", _short(prop.value)))
    return rows


def _values(what: str, values: list[Any]) -> list[Row]:
    """A row per input or output: its name, element type and shape."""
    rows = [(f"{what} {_short(v.name, 60)}", _value_type(v)) for v in values[:MAX_ROWS]]
    if len(values) > MAX_ROWS:
        rows.append((f"{what} …", f"{len(values) - MAX_ROWS} more"))
    return rows


def _value_type(value: Any) -> str:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return (kind or "no type").replace("_type", "")
    tensor = value.type.tensor_type
    dtype = ONNX_DTYPES.get(tensor.elem_type, f"type {tensor.elem_type}")
    if not tensor.HasField("shape"):
        return f"{dtype}, shape not given"
    dims = [
        str(d.dim_value) if d.HasField("dim_value") else _short(d.dim_param or "?", 30)
        for d in tensor.shape.dim
    ]
    return _short(f"{dtype} ({', '.join(dims)}{',' if len(dims) == 1 else ''})")


def _short(value: str | bytes, limit: int = VALUE_LIMIT) -> str:
    """A string from the model (bytes where it is not UTF-8), cut to `limit` characters."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"
