"""The layouts `core.reading.quantized_layouts` recognises, one function per family.

Each takes the key that triggered it and answers a `QuantizedLayout`, a one-line problem (the
keys look like the layout but do not fit it), or None (not this layout at all). The formulas
for shapes are those of the formats' own code: GPTQ packs 32/bits input rows into each int32 of
`qweight` [in*bits/32, out]; AWQ packs 32/bits output columns into `qweight` [in, out*bits/32];
bitsandbytes 4-bit packs two values a byte into `weight` and keeps the shape in a JSON tensor;
compressed-tensors packs densely along rows into `weight_packed` and keeps `weight_shape`; FP8
keeps one scale per block of `weight`; MXFP4 keeps 16 bytes (32 values) per block of `X_blocks`
and one exponent per block in `X_scales`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS
from modelbrowse.core.reading.quantization import Quantization
from modelbrowse.core.reading.quantized_layouts import (
    Describe,
    Described,
    QuantConfig,
    QuantizedLayout,
    ReadSmall,
    stored_bytes,
)
from modelbrowse.core.reading.structured_text import parse_json

Found = QuantizedLayout | str | None
FLOATS = ("float32", "float16", "bfloat16")
FP8 = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
BNB_BLOCKS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
QUANT_STATE_BYTES = 1 << 16


def layout_at(
    key: str,
    tensors: Mapping[str, Any],
    describe: Describe,
    config: QuantConfig,
    read_small: ReadSmall,
) -> Found:
    """The layout whose trigger key is `key`, if any."""

    def get(name: str) -> Described | None:
        value = tensors.get(name)
        return None if value is None else describe(value)

    prefix, _, name = key.rpartition(".")
    if name == "qweight":
        return _packed_int(prefix, get, config)
    if name == "SCB":
        return _bnb8(prefix, get)
    if name.startswith("bitsandbytes__"):
        return _bnb4(key, get, read_small)
    if name == "weight_packed":
        return _compressed(prefix, get, config, read_small)
    if name in ("weight_scale_inv", "weight_scale"):
        if f"{prefix}.weight_packed" in tensors:
            return None  # compressed-tensors' scale: its weight_packed decides
        return _scaled(prefix, name, get, config)
    if key.endswith("_blocks"):
        return _mxfp4(key[: -len("_blocks")], get)
    return None


def _layout(
    key: str,
    method: str,
    scheme: str,
    shape: tuple[int, ...],
    bits: float,
    group: int | None,
    pieces: dict[str, str],
    dtype: str,
    *,
    grouping: str = "",
    unsupported: str | None = None,
    options: dict[str, Any] | None = None,
) -> QuantizedLayout:
    q = Quantization(scheme, shape, bits, group, tuple(sorted(pieces.values())), dtype)
    return QuantizedLayout(key, method, q, pieces, options or {}, grouping, unsupported)


def _where(prefix: str) -> str:
    from modelbrowse.core.units import printable

    return repr(printable(prefix, 80))


# --- GPTQ and AWQ ---------------------------------------------------------------------------


def _packed_int(prefix: str, get: Any, config: QuantConfig) -> Found:
    pieces = {r: f"{prefix}.{r}" for r in ("qweight", "qzeros", "scales", "g_idx")}
    qweight, qzeros, scales, g_idx = (get(k) for k in pieces.values())
    pieces = {r: k for r, k in pieces.items() if get(k) is not None}
    where = _where(prefix)
    if qweight[0] != "int32" or len(qweight[1]) != 2:
        return f"{where}: its qweight is not a 2-D int32 tensor"
    if scales is None or scales[0] not in FLOATS or len(scales[1]) != 2:
        return f"{where}: its qweight has no 2-D floating scales beside it"
    if qzeros is not None and (qzeros[0] != "int32" or len(qzeros[1]) != 2):
        return f"{where}: its qzeros is not a 2-D int32 tensor"
    (rows, cols), (groups, outputs) = qweight[1], scales[1]
    method = config.method if config.method in ("gptq", "awq") else None
    method = method or ("gptq" if cols == outputs else "awq")
    if method == "gptq":
        bits = config.bits or _gptq_bits(rows, outputs, g_idx, qzeros)
        if bits is None or cols != outputs or (rows * 32) % bits or (outputs * bits) % 32:
            return f"{where}: its qweight {list(qweight[1])} and scales do not fit GPTQ"
        inputs = rows * 32 // bits
        if g_idx is not None and (len(g_idx[1]) != 1 or g_idx[1][0] != inputs):
            return f"{where}: its g_idx does not have {inputs:,} entries"
        zero_cols = outputs * bits // 32
    else:
        bits = config.bits or (
            32 * cols // outputs if outputs and (32 * cols) % outputs == 0 else 4
        )
        if outputs != cols * 32 // bits or (cols * 32) % bits:
            return f"{where}: its qweight {list(qweight[1])} and scales do not fit AWQ"
        inputs, zero_cols = rows, cols
    if qzeros is not None and qzeros[1] != (groups, zero_cols):
        return f"{where}: its qzeros {list(qzeros[1])} do not fit {groups} groups"
    if not 1 <= groups <= inputs:
        return f"{where}: its scales have {groups:,} groups for {inputs:,} inputs"
    size = config.group_size
    expected = 1 if size in (None, -1) or size >= inputs else -(-inputs // size)
    if size is not None and (size != -1 or groups != 1) and groups != expected:
        return f"{where}: group_size {size} needs {expected:,} groups, its scales have {groups:,}"
    group = -(-inputs // groups)
    grouping = f"groups of {group:,} inputs" if groups > 1 else "one scale per output"
    name = method.upper()
    unsupported = None
    options: dict[str, Any] = {"bits": bits, "inputs": inputs, "outputs": outputs}
    if method == "gptq":
        form = config.checkpoint_format or "gptq"
        options["zero_offset"] = 1 if form == "gptq" else 0
        if bits not in (2, 4, 8):
            unsupported = f"dequantization of GPTQ {bits}-bit is not supported"
        elif form not in ("gptq", "gptq_v2"):
            unsupported = f"dequantization of GPTQ ({form} format) is not supported"
    elif bits != 4 or config.version not in (None, "gemm"):
        kind = f"{bits}-bit" if bits != 4 else f"{config.version} version"
        unsupported = f"dequantization of AWQ ({kind}) is not supported"
    if qzeros is None and unsupported is None:
        unsupported = f"dequantization of {name} without qzeros is not supported"
    return _layout(
        f"{prefix}.weight",
        method,
        name,
        (outputs, inputs),
        bits,
        group,
        pieces,
        scales[0],
        grouping=grouping,
        unsupported=unsupported,
        options=options,
    )


def _gptq_bits(
    rows: int, outputs: int, g_idx: Described | None, qzeros: Described | None
) -> int | None:
    """GPTQ's bits from g_idx (one entry per input) or qzeros (outputs*bits/32 columns)."""
    if g_idx is not None and len(g_idx[1]) == 1 and g_idx[1][0]:
        bits, left = divmod(rows * 32, g_idx[1][0])
        return bits if not left and bits in (2, 3, 4, 8) else None
    if qzeros is not None and len(qzeros[1]) == 2 and outputs:
        bits, left = divmod(qzeros[1][1] * 32, outputs)
        return bits if not left and bits in (2, 3, 4, 8) else None
    return None


# --- bitsandbytes ---------------------------------------------------------------------------


def _bnb8(prefix: str, get: Any) -> Found:
    pieces = {r: f"{prefix}.{r}" for r in ("weight", "SCB", "weight_format")}
    weight, scb = get(pieces["weight"]), get(pieces["SCB"])
    if weight is None or weight[0] != "int8" or len(weight[1]) != 2:
        return None
    if scb[0] != "float32" or scb[1] != weight[1][:1]:
        return f"{_where(prefix)}: its SCB does not hold one scale per row of its weight"
    pieces = {r: k for r, k in pieces.items() if get(k) is not None}
    cols = weight[1][1]
    return _layout(
        pieces["weight"],
        "bnb8",
        "bitsandbytes int8",
        weight[1],
        8,
        cols,
        pieces,
        "float16",
        grouping="one scale per output row",
    )


def _bnb4(key: str, get: Any, read_small: ReadSmall) -> Found:
    weight_key, _, state_name = key.rpartition(".quant_state.")
    kind = state_name.removeprefix("bitsandbytes__")
    where = _where(weight_key)
    packed, state = get(weight_key), get(key)
    if packed is None or kind not in ("nf4", "fp4"):
        return None
    if state[0] != "uint8" or len(state[1]) != 1:
        return f"{where}: its quant_state is not a byte array"
    found = parse_json(read_small(key, QUANT_STATE_BYTES), f"{where}: its quant_state")
    if not isinstance(found, dict) or found.get("quant_type") != kind:
        return f"{where}: its quant_state is not a {kind} state"
    raw_shape, blocksize, dtype = found.get("shape"), found.get("blocksize"), found.get("dtype")
    if not _sizes(raw_shape) or blocksize not in BNB_BLOCKS or dtype not in FLOATS:
        return f"{where}: its quant_state has no usable shape, blocksize and dtype"
    shape = tuple(int(n) for n in raw_shape)  # type: ignore[union-attr]
    numel = math.prod(shape)
    if stored_bytes(packed) != -(-numel // 2):
        return f"{where}: {stored_bytes(packed):,} packed bytes cannot hold shape {list(shape)}"
    pieces = {
        r: f"{weight_key}.{r}"
        for r in ("absmax", "quant_map", "nested_absmax", "nested_quant_map")
        if get(f"{weight_key}.{r}") is not None
    }
    pieces.update(weight=weight_key, state=key)
    blocks = -(-numel // blocksize)
    absmax = get(pieces.get("absmax", ""))
    options: dict[str, Any] = {"quant_type": kind, "blocksize": blocksize}
    nested = found.get("nested_blocksize")
    if nested is None:
        if absmax != ("float32", (blocks,)):
            return f"{where}: its absmax does not hold {blocks:,} float32 scales"
    else:
        offset = found.get("nested_offset")
        inner = get(pieces.get("nested_absmax", ""))
        codes = get(pieces.get("nested_quant_map", ""))
        if (
            nested not in BNB_BLOCKS
            or not isinstance(offset, (int, float))
            or not math.isfinite(offset)
            or absmax != ("uint8", (blocks,))
            or inner != ("float32", (-(-blocks // nested),))
            or codes != ("float32", (256,))
        ):
            return f"{where}: its double-quantized absmax does not fit its quant_state"
        options.update(nested_blocksize=nested, nested_offset=float(offset))
    grouping = f"blocks of {blocksize}" + (", scales quantized too" if nested else "")
    return _layout(
        weight_key,
        "bnb4",
        f"bitsandbytes {kind}",
        shape,
        4,
        blocksize,
        pieces,
        dtype,
        grouping=grouping,
        options=options,
    )


def _sizes(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 1 <= len(value) <= DEFAULT_LIMITS.tensor_rank
        and all(type(n) is int and 0 <= n < 1 << 62 for n in value)
    )


# --- scaled 8-bit weights (FP8 in blocks, per channel or per tensor; int8) ------------------


def _scaled(prefix: str, name: str, get: Any, config: QuantConfig) -> Found:
    pieces = {"weight": f"{prefix}.weight", "scale": f"{prefix}.{name}"}
    weight, scale = get(pieces["weight"]), get(pieces["scale"])
    if weight is None or weight[0] not in (*FP8, "int8") or len(weight[1]) < 2:
        return None
    where = _where(prefix)
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
    return _layout(
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


def _mxfp4(base: str, get: Any) -> Found:
    pieces = {"blocks": f"{base}_blocks", "scales": f"{base}_scales"}
    blocks, scales = get(pieces["blocks"]), get(pieces["scales"])
    if blocks[0] != "uint8" or len(blocks[1]) < 2 or blocks[1][-1] != 16:
        return None
    if scales is None or scales != ("uint8", blocks[1][:-1]):
        return f"{_where(base)}: its _blocks have no _scales of shape {list(blocks[1][:-1])}"
    shape = (*blocks[1][:-2], blocks[1][-2] * 32)
    return _layout(
        base, "mxfp4", "MXFP4", shape, 4, 32, pieces, "bfloat16", grouping="blocks of 32"
    )


def _compressed(prefix: str, get: Any, config: QuantConfig, read_small: ReadSmall) -> Found:
    roles = ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape", "weight_g_idx")
    pieces = {r: f"{prefix}.{r}" for r in (*roles, "weight_global_scale")}
    pieces = {r: k for r, k in pieces.items() if get(k) is not None}
    packed, scale = get(pieces["weight_packed"]), get(pieces.get("weight_scale", ""))
    where = _where(prefix)
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
    return _layout(
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
