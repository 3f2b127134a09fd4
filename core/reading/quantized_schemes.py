"""The layouts `core.reading.quantized_layouts` recognises, one function per family.

Each takes the key that triggered it and answers a `QuantizedLayout`, a one-line problem (the
keys look like the layout but do not fit it), or None (not this layout at all). The formulas
for shapes are those of the formats' own code: GPTQ packs 32/bits input rows into each int32 of
`qweight` [in*bits/32, out]; AWQ packs 32/bits output columns into `qweight` [in, out*bits/32];
bitsandbytes 4-bit packs two values a byte into `weight` and keeps the shape in a JSON tensor;
compressed-tensors packs densely along rows into `weight_packed` and keeps `weight_shape`; FP8
keeps one scale per block of `weight`; MXFP4 keeps 16 bytes (32 values) per block of `X_blocks`
and one exponent per block in `X_scales` (those three in `core.reading.quantized_scaled`).
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
from modelbrowse.core.units import printable

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
    from modelbrowse.core.reading.quantized_scaled import compressed, mxfp4, scaled

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
        return compressed(prefix, get, config, read_small)
    if name in ("weight_scale_inv", "weight_scale"):
        if f"{prefix}.weight_packed" in tensors:
            return None  # compressed-tensors' scale: its weight_packed decides
        return scaled(prefix, name, get, config)
    if key.endswith("_blocks"):
        return mxfp4(key[: -len("_blocks")], get)
    return None


def make_layout(
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
    """The layout of one layer; its pieces listed in key order in the shared record."""
    q = Quantization(scheme, shape, bits, group, tuple(sorted(pieces.values())), dtype)
    return QuantizedLayout(key, method, q, pieces, options or {}, grouping, unsupported)


def quoted(prefix: str) -> str:
    """A layer's name as messages quote it: escaped and cut to 80 characters."""
    return repr(printable(prefix, 80))


# --- GPTQ and AWQ ---------------------------------------------------------------------------


def _packed_int(prefix: str, get: Any, config: QuantConfig) -> Found:
    pieces = {r: f"{prefix}.{r}" for r in ("qweight", "qzeros", "scales", "g_idx")}
    qweight, qzeros, scales, g_idx = (get(k) for k in pieces.values())
    pieces = {r: k for r, k in pieces.items() if get(k) is not None}
    where = quoted(prefix)
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
    return make_layout(
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
        return f"{quoted(prefix)}: its SCB does not hold one scale per row of its weight"
    pieces = {r: k for r, k in pieces.items() if get(k) is not None}
    cols = weight[1][1]
    return make_layout(
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
    where = quoted(weight_key)
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
    pieces = {"weight": weight_key}
    for role in ("absmax", "quant_map", "nested_absmax", "nested_quant_map"):
        if get(f"{weight_key}.{role}") is not None:
            pieces[role] = f"{weight_key}.{role}"
    pieces["state"] = key
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
    return make_layout(
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
