"""Quantized layouts of scaled weights: FP8 (in blocks, per channel, per tensor) and int8 with
`weight_scale`, MXFP4's `X_blocks` and `X_scales`, and compressed-tensors' `weight_packed`;
as `core.reading.quantized_schemes`, each answers a layout, a one-line problem, or None."""

from __future__ import annotations

import math
from typing import Any

from modelbrowse.core.reading.quantized_layouts import QuantConfig, ReadSmall
from modelbrowse.core.reading.quantized_schemes import (
    FLOATS,
    FP8,
    Found,
    make_layout,
    quoted,
)

# --- scaled 8-bit weights (FP8 in blocks, per channel or per tensor; int8) ------------------


def scaled(prefix: str, name: str, get: Any, config: QuantConfig) -> Found:
    pieces = {"weight": f"{prefix}.weight", "scale": f"{prefix}.{name}"}
    weight, scale = get(pieces["weight"]), get(pieces["scale"])
    if weight is None or weight[0] not in (*FP8, "int8") or len(weight[1]) < 2:
        return None
    where = quoted(prefix)
    if scale[0] not in (*FLOATS, "float8_e8m0fnu"):
        return f"{where}: its {name} is {scale[0]}, not a floating scale"
    *outer, rows, cols = weight[1]
    found = _blocks(tuple(outer), rows, cols, scale[1], config.block)
    if found is None:
        return f"{where}: its {name} {list(scale[1])} fits no block size of {list(weight[1])}"
    block_rows, block_cols = found
    kind = "FP8" if weight[0] in FP8 else "int8"
    if (block_rows, block_cols) == (1, cols):
        scheme, grouping = f"{kind} per channel", "one scale per output row"
    elif (block_rows, block_cols) == (rows, cols):
        scheme, grouping = f"{kind} per tensor", "one scale"
    else:
        scheme, grouping = f"{kind} block", f"blocks of {block_rows}x{block_cols}"
    return make_layout(
        pieces["weight"],
        "fp8",
        scheme,
        weight[1],
        8,
        block_rows * block_cols,
        pieces,
        "bfloat16",
        grouping=grouping,
        options={"block": found},
    )


def _blocks(
    outer: tuple[int, ...],
    rows: int,
    cols: int,
    scale: tuple[int, ...],
    configured: tuple[int, int] | None,
) -> tuple[int, int] | None:
    """The block (rows, cols) one scale covers, told from the scale's shape."""
    if math.prod(scale) == 1 and not outer:
        return rows, cols
    if scale in ((*outer, rows, 1), (*outer, rows)) and configured is None:
        return 1, cols
    if len(scale) != len(outer) + 2 or tuple(scale[:-2]) != outer:
        return None
    a, b = scale[-2:]
    candidates = [configured] if configured else [(128, 128)]
    if not configured and a and b and rows % a == 0 and cols % b == 0:
        candidates.append((rows // a, cols // b))
    for r, c in candidates:
        if -(-rows // r) == a and -(-cols // c) == b:
            return r, c
    return None


# --- MXFP4 and compressed-tensors -----------------------------------------------------------


def mxfp4(base: str, get: Any) -> Found:
    pieces = {"blocks": f"{base}_blocks", "scales": f"{base}_scales"}
    blocks, scales = get(pieces["blocks"]), get(pieces["scales"])
    if blocks[0] != "uint8" or len(blocks[1]) < 2 or blocks[1][-1] != 16:
        return None
    if scales is None or scales != ("uint8", blocks[1][:-1]):
        return f"{quoted(base)}: its _blocks have no _scales of shape {list(blocks[1][:-1])}"
    shape = (*blocks[1][:-2], blocks[1][-2] * 32)
    return make_layout(
        base, "mxfp4", "MXFP4", shape, 4, 32, pieces, "bfloat16", grouping="blocks of 32"
    )


def compressed(prefix: str, get: Any, config: QuantConfig, read_small: ReadSmall) -> Found:
    roles = ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx")
    pieces = {r: f"{prefix}.{r}" for r in (*roles, "weight_global_scale")}
    pieces = {r: k for r, k in pieces.items() if get(k) is not None}
    packed, scale = get(pieces["weight_packed"]), get(pieces.get("weight_scale", ""))
    where = quoted(prefix)
    if packed[0] not in ("int32", "uint8") or len(packed[1]) != 2:
        return f"{where}: its weight_packed is not a 2-D int32 or uint8 tensor"
    if scale is None or len(scale[1]) != 2 or scale[1][0] != packed[1][0]:
        return f"{where}: its weight_packed has no scale per row beside it"
    rows, words = packed[1]
    shape = _compressed_shape(pieces, get, read_small, where)
    if isinstance(shape, str):
        return shape
    candidates = sorted(config.group_bits) + [b for b in (4, 8, 2) if b not in config.group_bits]
    if packed[0] == "uint8":
        candidates = [4]  # two values a byte: nvfp4
    bits = None
    for b in candidates:
        inputs = shape[1] if shape else words * 32 // b
        per_word = 32 if packed[0] == "int32" else 8
        if -(-inputs * b // per_word) == words and (not shape or shape[0] == rows):
            bits = b
            break
    if bits is None:
        return f"{where}: its weight_packed {list(packed[1])} fits no bit width of its shape"
    inputs = shape[1] if shape else words * 32 // bits
    groups = scale[1][1]
    if not 1 <= groups <= inputs:
        return f"{where}: its weight_scale has {groups:,} groups for {inputs:,} inputs"
    group = -(-inputs // groups)
    fp4 = packed[0] == "uint8"
    unsupported = None
    if fp4 or bits not in (2, 4, 8) or "weight_zero_point" in pieces:
        kind = "nvfp4" if fp4 else f"int{bits}" + (" asymmetric" if bits in (2, 4, 8) else "")
        unsupported = f"dequantization of compressed-tensors {kind} is not supported"
    return make_layout(
        f"{prefix}.weight",
        "compressed",
        "compressed-tensors " + ("nvfp4" if fp4 else f"int{bits}"),
        (rows, inputs),
        bits,
        group,
        pieces,
        scale[0] if scale[0] in FLOATS else "bfloat16",
        grouping=f"groups of {group:,} inputs" if groups > 1 else "one scale per output",
        unsupported=unsupported,
        options={"bits_stored": bits},
    )


def _compressed_shape(
    pieces: dict[str, str], get: Any, read_small: ReadSmall, where: str
) -> tuple[int, int] | str | None:
    """The logical shape a compressed-tensors layer keeps in `weight_shape`, if it has one."""
    key = pieces.get("weight_shape")
    if key is None:
        return None
    dtype, shape = get(key)
    if dtype not in ("int32", "int64") or shape != (2,):
        return f"{where}: its weight_shape is not two integers"
    raw = read_small(key, 16)
    size = 4 if dtype == "int32" else 8
    values = [int.from_bytes(raw[i : i + size], "little", signed=True) for i in (0, size)]
    if any(not 0 < v < 1 << 40 for v in values):
        return f"{where}: its weight_shape {values} is not a shape"
    return values[0], values[1]
