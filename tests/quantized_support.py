"""Quantized checkpoints the tests write themselves, from each format's documented key layout.

Each quantizer follows the packing of the format's own code (GPTQModel's `pack`, AutoAWQ's
`pack_awq` with its column order, bitsandbytes' `quantize_4bit`, DeepSeek-V3's FP8 blocks, the
OCP MX spec for MXFP4, compressed-tensors' `pack_to_int32`) and returns, beside the pieces, the
values their documented dequantization gives, computed from the integer codes before packing:
what `core.dequantize` must reproduce from the packed bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

NF4 = torch.tensor(
    [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
     -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
     0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
     0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
)  # fmt: skip
FP4 = torch.tensor([0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3]) / 12
E2M1 = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
SCHEMES = ("gptq", "awq", "bnb-nf4", "bnb-fp4", "bnb-int8", "fp8", "mxfp4", "compressed")

Pieces = dict[str, torch.Tensor]  # key suffix -> tensor


def as_int32(values: torch.Tensor) -> torch.Tensor:
    """Unsigned 32-bit words (in int64) as the int32 tensors the formats store."""
    values = values & 0xFFFFFFFF
    return torch.where(values >= 1 << 31, values - (1 << 32), values).to(torch.int32)


def pack_rows(values: torch.Tensor, bits: int) -> torch.Tensor:
    """32/bits consecutive rows into each word, the first in the low bits (GPTQ's qweight)."""
    per_word = 32 // bits
    grouped = values.long().reshape(-1, per_word, values.shape[1])
    shifts = torch.arange(per_word).view(1, -1, 1) * bits
    return as_int32((grouped << shifts).sum(1))


def pack_columns(values: torch.Tensor, bits: int, order: tuple[int, ...] | None = None) -> Any:
    """32/bits consecutive columns into each word (AWQ's with its order of columns)."""
    per_word = 32 // bits
    grouped = values.long().reshape(values.shape[0], -1, per_word)
    if order is not None:
        grouped = grouped[:, :, list(order)]
    shifts = torch.arange(per_word).view(1, 1, -1) * bits
    return as_int32((grouped << shifts).sum(2))


def gptq(weight: torch.Tensor, bits: int = 4, group: int = 32, v1: bool = True,
         act_order: bool = False) -> tuple[Pieces, torch.Tensor]:  # fmt: skip
    """GPTQ pieces of a [out, in] weight (asymmetric, min-max), and their dequantization
    `scales[g_idx] * (q - zeros[g_idx])`, transposed back to [out, in]."""
    out, inputs = weight.shape
    maxq = (1 << bits) - 1
    g_idx = torch.arange(inputs) // group
    if act_order:  # columns in a shuffled order share groups, as desc_act leaves them
        order = torch.randperm(inputs, generator=torch.Generator().manual_seed(1))
        g_idx = torch.empty_like(g_idx)
        g_idx[order] = torch.arange(inputs) // group
    groups = -(-inputs // group)
    scales = torch.empty(groups, out)
    zeros = torch.empty(groups, out, dtype=torch.long)
    for g in range(groups):
        part = weight[:, g_idx == g].float()
        low, high = part.min(1).values.clamp(max=0), part.max(1).values.clamp(min=0)
        scale = ((high - low) / maxq).clamp(min=1e-8).half().float()
        scales[g], zeros[g] = scale, torch.round(-low / scale).long().clamp(0, maxq)
    q = torch.round(weight.float() / scales[g_idx].T + zeros[g_idx].T).clamp(0, maxq).long()
    pieces = {
        "qweight": pack_rows(q.T, bits),
        "qzeros": pack_columns(zeros - (1 if v1 else 0), bits),
        "scales": scales.half(),
        "g_idx": g_idx.int(),
    }
    expected = (scales[g_idx] * (q.T - zeros[g_idx])).T
    return pieces, expected


def awq(weight: torch.Tensor, group: int = 32) -> tuple[Pieces, torch.Tensor]:
    """AWQ GEMM pieces of a [out, in] weight: qweight [in, out/8] in AWQ's column order."""
    w = weight.float().T  # [in, out]
    inputs, out = w.shape
    g = torch.arange(inputs) // group
    grouped = w.reshape(-1, group, out)
    low, high = grouped.min(1).values, grouped.max(1).values
    scales = ((high - low) / 15).clamp(min=1e-8).half().float()
    zeros = torch.round(-low / scales).clamp(0, 15).long()
    q = (torch.round(w / scales[g]) + zeros[g]).clamp(0, 15).long()
    pieces = {
        "qweight": pack_columns(q, 4, AWQ_ORDER),
        "qzeros": pack_columns(zeros, 4, AWQ_ORDER),
        "scales": scales.half(),
    }
    return pieces, ((q - zeros[g]) * scales[g]).T


def bnb4(weight: torch.Tensor, quant_type: str = "nf4", blocksize: int = 64,
         nested: bool = True) -> tuple[Pieces, torch.Tensor]:  # fmt: skip
    """bitsandbytes 4-bit pieces under `weight`: two codes a byte, the first in the high
    nibble; one absmax per block, double-quantized (`nested`) as `quantize_4bit` leaves it."""
    table = NF4 if quant_type == "nf4" else FP4
    flat = weight.reshape(-1).float()
    n = flat.numel()
    blocks = -(-n // blocksize)
    padded = torch.nn.functional.pad(flat, (0, blocks * blocksize - n)).view(blocks, blocksize)
    absmax = padded.abs().max(1).values.clamp(min=1e-12)
    codes = ((padded / absmax[:, None]).reshape(-1, 1) - table).abs().argmin(1)[:n]
    even = torch.nn.functional.pad(codes, (0, n % 2))
    pieces: Pieces = {"weight": ((even[0::2] << 4) | even[1::2]).to(torch.uint8).unsqueeze(1)}
    state: dict[str, Any] = {"quant_type": quant_type, "blocksize": blocksize,
                             "dtype": "float32", "shape": list(weight.shape)}  # fmt: skip
    pieces["weight.quant_map"] = table.clone()
    if nested:
        offset = absmax.mean()
        centred = absmax - offset
        inner = -(-blocks // 256)
        pad = torch.nn.functional.pad(centred, (0, inner * 256 - blocks)).view(inner, 256)
        nested_absmax = pad.abs().max(1).values.clamp(min=1e-12)
        code = torch.linspace(-1, 1, 256)
        scaled = (centred / nested_absmax.repeat_interleave(256)[:blocks]).reshape(-1, 1)
        index = (scaled - code).abs().argmin(1)
        pieces["weight.absmax"] = index.to(torch.uint8)
        pieces["weight.nested_absmax"] = nested_absmax
        pieces["weight.nested_quant_map"] = code
        state.update(nested_blocksize=256, nested_dtype="float32", nested_offset=offset.item())
        absmax = code[index] * nested_absmax.repeat_interleave(256)[:blocks] + offset
    else:
        pieces["weight.absmax"] = absmax
    key = f"weight.quant_state.bitsandbytes__{quant_type}"
    pieces[key] = torch.tensor(list(json.dumps(state).encode()), dtype=torch.uint8)
    expected = table[codes] * absmax.repeat_interleave(blocksize)[:n]
    return pieces, expected.view(weight.shape)


def bnb8(weight: torch.Tensor) -> tuple[Pieces, torch.Tensor]:
    """LLM.int8 pieces: int8 rows with one absmax (SCB) per row."""
    scb = weight.float().abs().max(1).values
    q = torch.round(weight.float() * 127 / scb[:, None]).to(torch.int8)
    pieces = {"weight": q, "SCB": scb, "weight_format": torch.tensor(0, dtype=torch.uint8)}
    return pieces, q.float() * scb[:, None] / 127


def fp8(weight: torch.Tensor, block: int = 32) -> tuple[Pieces, torch.Tensor]:
    """DeepSeek-V3 FP8: e4m3 values and one float32 `weight_scale_inv` per block."""
    out, inputs = weight.shape
    a, b = -(-out // block), -(-inputs // block)
    scale = torch.empty(a, b)
    for i in range(a):
        for j in range(b):
            part = weight[i * block : (i + 1) * block, j * block : (j + 1) * block]
            scale[i, j] = part.abs().max().clamp(min=1e-12) / 448
    full = scale.repeat_interleave(block, 0)[:out].repeat_interleave(block, 1)[:, :inputs]
    q = (weight.float() / full).to(torch.float8_e4m3fn)
    return {"weight": q, "weight_scale_inv": scale}, q.float() * full


def mxfp4(weight: torch.Tensor) -> tuple[Pieces, torch.Tensor]:
    """MXFP4 as gpt-oss stores it: `_blocks` [..., in/32, 16], two E2M1 codes a byte (the
    first in the low nibble), and `_scales` [..., in/32], exponents biased by 127."""
    *outer, inputs = weight.shape
    groups = weight.float().reshape(*outer, inputs // 32, 32)
    amax = groups.abs().amax(-1).clamp(min=2**-100)
    exponent = torch.floor(torch.log2(amax)) - 2  # E2M1's largest value is 1.5 * 2**2
    scaled = groups / torch.exp2(exponent)[..., None]
    codes = (scaled.reshape(-1, 1) - E2M1).abs().argmin(1).view(groups.shape)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).to(torch.uint8)
    expected = E2M1[codes] * torch.exp2(exponent)[..., None]
    pieces = {"_blocks": blocks, "_scales": (exponent + 127).to(torch.uint8)}
    return pieces, expected.reshape(weight.shape)


def compressed(weight: torch.Tensor, group: int = 32) -> tuple[Pieces, torch.Tensor]:
    """compressed-tensors pack-quantized int4, symmetric: `(q + 8)` packed eight to an int32
    along rows, one scale per group, and the logical shape in `weight_shape`."""
    out, inputs = weight.shape
    grouped = weight.float().reshape(out, -1, group)
    scale = (grouped.abs().amax(-1) / 7).clamp(min=1e-8).to(torch.bfloat16).float()
    q = torch.round(grouped / scale[..., None]).clamp(-8, 7).long().reshape(out, inputs)
    pieces = {
        "weight_packed": pack_columns(q + 8, 4),
        "weight_scale": scale.to(torch.bfloat16),
        "weight_shape": torch.tensor([out, inputs], dtype=torch.int64),
    }
    return pieces, q * scale.repeat_interleave(group, 1)


CONFIGS: dict[str, dict[str, Any]] = {
    "gptq": {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False,
             "sym": False, "checkpoint_format": "gptq"},
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 32, "zero_point": True,
            "version": "gemm"},
    "bnb-nf4": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                "bnb_4bit_quant_type": "nf4"},
    "bnb-fp4": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                "bnb_4bit_quant_type": "fp4"},
    "bnb-int8": {"quant_method": "bitsandbytes", "load_in_8bit": True},
    "fp8": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
            "weight_block_size": [32, 32]},
    "mxfp4": {"quant_method": "mxfp4"},
    "compressed": {"quant_method": "compressed-tensors", "format": "pack-quantized",
                   "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                       "num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                       "group_size": 32}}}},
}  # fmt: skip


def quantize(scheme: str, weight: torch.Tensor) -> tuple[Pieces, torch.Tensor]:
    """The pieces of one [out, in] weight (suffixes after the module's path) and their values."""
    if scheme == "gptq":
        return gptq(weight)
    if scheme == "awq":
        return awq(weight)
    if scheme.startswith("bnb-") and scheme != "bnb-int8":
        return bnb4(weight, scheme.removeprefix("bnb-"))
    return {"bnb-int8": bnb8, "fp8": fp8, "mxfp4": mxfp4, "compressed": compressed}[scheme](weight)


@dataclass
class QuantizedModel:
    """A quantized folder written by `write_quantized`, and what it was made from."""

    folder: Path
    state: dict[str, torch.Tensor]  # the unquantized weights
    expected: dict[str, torch.Tensor]  # logical key -> the values dequantization must give
    params: int  # the unquantized model's parameter count


def tiny_llama(hidden: int = 64, layers: int = 2) -> tuple[Any, dict[str, torch.Tensor], int]:
    """A tiny Llama from LlamaConfig: its config, state_dict and parameter count."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         vocab_size=256)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return config, state, sum(p.numel() for p in model.parameters())


def write_quantized(folder: Path, scheme: str, config: dict[str, Any] | None = None) -> Any:
    """A Hugging Face folder of a tiny Llama whose layers' linear weights are quantized with
    `scheme` (the embeddings, norms and lm_head stay as they are, as exporters leave them)."""
    llama, state, params = tiny_llama()
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    expected: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".layers." not in key or not key.endswith("_proj.weight"):
            tensors[key] = value
            continue
        pieces, values = quantize(scheme, value)
        base = key if scheme == "mxfp4" else key.removesuffix(".weight")
        joined = {(base + s if s.startswith("_") else f"{base}.{s}"): t for s, t in pieces.items()}
        tensors.update(joined)
        expected[key] = values
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "model.safetensors")
    data = json.loads(llama.to_json_string())
    data["quantization_config"] = config if config is not None else CONFIGS[scheme]
    (folder / "config.json").write_text(json.dumps(data))
    return QuantizedModel(folder, state, expected, params)


def close_to(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6))


def error_bound(original: torch.Tensor, values: torch.Tensor) -> float:
    """The largest error relative to the largest magnitude: quantization error only."""
    return float((original.float() - values).abs().max() / original.abs().max().clamp(min=1e-12))
