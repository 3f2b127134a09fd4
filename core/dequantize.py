"""The values of a quantized weight: its pieces dequantized to float32 on the CPU.

Each formula is the one of the format's own code: GPTQ as GPTQModel's `dequantize_weight`
(`scales[g_idx] * (q - (zeros + offset))`, zeros stored one less in the `gptq` checkpoint
format), AWQ as AutoAWQ's `dequantize_gemm` (columns unpacked in AWQ's reverse order),
bitsandbytes 4-bit as its `dequantize_4bit` (high nibble first, NF4 or FP4 table, one absmax per
block, itself dequantized through `nested_quant_map` when double-quantized), LLM.int8 as
`weight * SCB / 127`, FP8 as DeepSeek-V3's `weight_dequant` (one scale per block), MXFP4 as
transformers' `convert_moe_packed_tensors` (low nibble first, times 2**(scale - 127)) and
compressed-tensors as `unpack_from_int32` then `(q - 2**(bits-1)) * scale` per group.

A weight is dequantized by rows of its logical shape seen as (rows, last dimension), so
statistics go chunk by chunk without the whole float32 copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import torch

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.quantized_weights import QuantizedWeight
from modelbrowse.core.stats import CHUNK_ELEMENTS, TensorStats, compute_stats, summarise_chunks
from modelbrowse.core.tensor_bytes import TensorBytesError, check_file_holds

NF4 = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)
FP4 = tuple(v / 12 for v in (0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3))
E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)
# Values the estimate dequantizes, in this many runs of rows spread over the weight.
ESTIMATE_VALUES = 16384
ESTIMATE_RUNS = 8


class DequantizeError(ModelBrowseError):
    """A quantized weight whose pieces do not hold what its layout says."""


def unavailable_reason(weight: QuantizedWeight) -> str | None:
    """Why a quantized weight has no statistics to show, or None when it has."""
    if weight.layout.unsupported:
        return weight.layout.unsupported
    if weight.is_meta:
        return "meta tensor: no data"
    if weight.count == 0:
        return "empty tensor"
    pieces = _tensors(weight)
    try:
        for role, piece in pieces.items():
            check_file_holds(piece, weight.layout.pieces[role])
    except TensorBytesError as exc:
        return str(exc)
    g_idx = pieces.get("g_idx", pieces.get("weight_g_idx"))
    scales = pieces.get("scales", pieces.get("weight_scale"))
    if g_idx is not None and scales is not None and g_idx.numel():
        groups = scales.shape[0] if "scales" in pieces else scales.shape[1]
        if g_idx.min() < 0 or g_idx.max() >= groups:
            return "its g_idx names groups its scales do not have"
    return None


def logical_rows(weight: QuantizedWeight) -> tuple[int, int]:
    """The logical shape seen as (rows, columns): every dimension but the last are rows."""
    shape = weight.shape
    return math.prod(shape[:-1]), shape[-1]


def dequantize(weight: QuantizedWeight) -> torch.Tensor:
    """The whole weight in float32, in its logical shape."""
    rows, _ = logical_rows(weight)
    return dequantize_rows(weight, 0, rows).reshape(weight.shape)


def dequantize_rows(weight: QuantizedWeight, start: int, stop: int) -> torch.Tensor:
    """Logical rows `start` to `stop` in float32, shape (stop - start, columns)."""
    reason = unavailable_reason(weight)
    if reason is not None:
        raise DequantizeError(reason)
    with torch.no_grad():
        try:
            return _SCHEMES[weight.layout.method](weight, start, stop).float()
        except (IndexError, RuntimeError, ValueError) as exc:  # pieces that lie
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DequantizeError(f"cannot dequantize: {first[:200]}") from None


def estimate_stats(weight: QuantizedWeight) -> TensorStats:
    """Statistics from a few runs of rows spread over the weight: milliseconds at any size."""
    rows, cols = logical_rows(weight)
    per_run = max(1, ESTIMATE_VALUES // ESTIMATE_RUNS // max(cols, 1))
    if rows <= per_run * ESTIMATE_RUNS:
        return compute_stats_of(weight)
    step = rows // ESTIMATE_RUNS
    starts = [i * step + (step - per_run) // 2 for i in range(ESTIMATE_RUNS)]
    sample = torch.cat([dequantize_rows(weight, s, s + per_run).reshape(-1) for s in starts])
    return replace(compute_stats(sample), numel=weight.count, estimated=True)


def compute_stats_of(
    weight: QuantizedWeight, cancelled: Callable[[], bool] | None = None
) -> TensorStats:
    """Exact statistics of every dequantized value, a chunk of rows at a time."""
    return summarise_chunks(_Chunks(weight), weight.count, cancelled)


class _Chunks(Sequence[torch.Tensor]):
    """The dequantized weight as flat chunks of about CHUNK_ELEMENTS values, each made when
    it is read (the statistics read them twice: twice the work, never the whole copy)."""

    def __init__(self, weight: QuantizedWeight) -> None:
        self.weight = weight
        rows, cols = logical_rows(weight)
        self.rows = rows
        self.step = max(1, CHUNK_ELEMENTS // max(cols, 1))
        self._last: tuple[int, torch.Tensor] | None = None  # the first is read twice at once

    def __len__(self) -> int:
        return -(-self.rows // self.step)

    def __getitem__(self, i: int) -> torch.Tensor:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self._last is not None and self._last[0] == i:
            return self._last[1]
        start = i * self.step
        chunk = dequantize_rows(self.weight, start, min(self.rows, start + self.step)).reshape(-1)
        self._last = (i, chunk)
        return chunk

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[i] for i in range(len(self)))


# --- the schemes ----------------------------------------------------------------------------


def _tensors(weight: QuantizedWeight) -> dict[str, torch.Tensor]:
    """Its pieces by role: tensors, once the full open has mapped them."""
    return weight.pieces


def _unpack(words: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Values packed low bits first, 32/bits to an int32, unpacked along `dim` (0 or 1)."""
    shifts = torch.arange(0, 32, bits, dtype=torch.int32)
    mask = (1 << bits) - 1
    if dim == 0:  # [rows, cols] -> [rows * per_word, cols]
        values = (words.unsqueeze(1) >> shifts.view(1, -1, 1)) & mask
        return values.reshape(-1, words.shape[1])
    values = (words.unsqueeze(2) >> shifts.view(1, 1, -1)) & mask
    return values.reshape(words.shape[0], -1)


def _groups(weight: QuantizedWeight, inputs: int, groups: int) -> torch.Tensor:
    """The group of each input: g_idx where the layer has one, else consecutive groups."""
    pieces = _tensors(weight)
    g_idx = pieces.get("g_idx", pieces.get("weight_g_idx"))
    if g_idx is None:
        return torch.arange(inputs) // -(-inputs // groups)
    index = g_idx.reshape(-1).long()
    if index.numel() != inputs or (index.numel() and (index.min() < 0 or index.max() >= groups)):
        raise DequantizeError("its g_idx names groups its scales do not have")
    return index


def _gptq(weight: QuantizedWeight, start: int, stop: int) -> torch.Tensor:
    p, o = _tensors(weight), weight.layout.options
    bits: int = o["bits"]
    inputs: int = o["inputs"]
    offset: int = o["zero_offset"]
    q = _unpack(p["qweight"][:, start:stop], bits, 0)
    zeros = _unpack(p["qzeros"], bits, 1)[:, start:stop] + offset
    scales = p["scales"][:, start:stop].float()
    g = _groups(weight, inputs, scales.shape[0])
    return (scales[g] * (q - zeros[g])).T


def _awq(weight: QuantizedWeight, start: int, stop: int) -> torch.Tensor:
    p, o = _tensors(weight), weight.layout.options
    bits, inputs = o["bits"], o["inputs"]
    per_word = 32 // bits
    first, last = start // per_word, -(-stop // per_word)
    order = torch.arange((last - first) * per_word).view(-1, per_word)
    order = order[:, list(AWQ_REVERSE_ORDER)].reshape(-1)
    q = _unpack(p["qweight"][:, first:last], bits, 1)[:, order]
    zeros = _unpack(p["qzeros"][:, first:last], bits, 1)[:, order]
    scales = p["scales"][:, first * per_word : last * per_word].float()
    g = _groups(weight, inputs, scales.shape[0])
    values = ((q - zeros[g]) * scales[g]).T
    skip = start - first * per_word
    return values[skip : skip + stop - start]


def _bnb4(weight: QuantizedWeight, start: int, stop: int) -> torch.Tensor:
    p, o = _tensors(weight), weight.layout.options
    _, cols = logical_rows(weight)
    first, last = start * cols, stop * cols
    packed = p["weight"].contiguous().reshape(-1).view(torch.uint8)
    data = packed[first // 2 : -(-last // 2)]
    codes = torch.empty(data.numel() * 2, dtype=torch.long)
    codes[0::2], codes[1::2] = data >> 4, data & 0xF
    table = torch.tensor(NF4 if o["quant_type"] == "nf4" else FP4, dtype=torch.float32)
    values = table[codes][first - first // 2 * 2 :][: last - first]
    block = torch.arange(first, last) // o["blocksize"]
    return (values * _absmax(weight)[block]).view(stop - start, cols)


def _absmax(weight: QuantizedWeight) -> torch.Tensor:
    """One scale per block; double-quantized ones through `nested_quant_map` plus the offset."""
    p, o = _tensors(weight), weight.layout.options
    if "nested_blocksize" not in o:
        return p["absmax"].float()
    codes = p["absmax"].reshape(-1).long()
    block = torch.arange(codes.numel()) // o["nested_blocksize"]
    offset: float = o["nested_offset"]
    return p["nested_quant_map"].float()[codes] * p["nested_absmax"].float()[block] + offset


def _bnb8(weight: QuantizedWeight, start: int, stop: int) -> torch.Tensor:
    p = _tensors(weight)
    return p["weight"][start:stop].float() * (p["SCB"][start:stop].float() / 127).unsqueeze(1)


def _scaled(weight: QuantizedWeight, start: int, stop: int) -> torch.Tensor:
    p = _tensors(weight)
    block_rows, block_cols = weight.layout.options["block"]
    rows, cols = weight.shape[-2:]
    values = p["weight"].reshape(-1, cols)[start:stop].float()
    scale = p["scale"].float()
    per_outer = -(-rows // block_rows)
    scale = scale.reshape(-1, scale.shape[-1] if scale.dim() else 1)
    index = torch.arange(start, stop)
    scale_rows = scale[index // rows * per_outer + index % rows // block_rows]
    return values * scale_rows[:, torch.arange(cols) // block_cols]


def _mxfp4(weight: QuantizedWeight, start: int, stop: int) -> torch.Tensor:
    p = _tensors(weight)
    blocks = p["blocks"].reshape(-1, *p["blocks"].shape[-2:])[start:stop]
    exponents = p["scales"].reshape(-1, p["scales"].shape[-1])[start:stop].int() - 127
    table = torch.tensor(E2M1, dtype=torch.float32)
    values = torch.empty(*blocks.shape[:-1], 32, dtype=torch.float32)
    values[..., 0::2] = table[(blocks & 0x0F).long()]
    values[..., 1::2] = table[(blocks >> 4).long()]
    values = torch.ldexp(values, exponents.unsqueeze(-1))
    return values.reshape(stop - start, -1)


def _compressed(weight: QuantizedWeight, start: int, stop: int) -> torch.Tensor:
    p, o = _tensors(weight), weight.layout.options
    bits: int = o["bits_stored"]
    inputs = weight.shape[-1]
    q = _unpack(p["weight_packed"][start:stop], bits, 1)[:, :inputs] - (1 << (bits - 1))
    scale = p["weight_scale"][start:stop].float()
    return q * scale[:, _groups(weight, inputs, scale.shape[1])]


_SCHEMES: dict[str, Callable[[QuantizedWeight, int, int], torch.Tensor]] = {
    "gptq": _gptq,
    "awq": _awq,
    "bnb4": _bnb4,
    "bnb8": _bnb8,
    "fp8": _scaled,
    "mxfp4": _mxfp4,
    "compressed": _compressed,
}
