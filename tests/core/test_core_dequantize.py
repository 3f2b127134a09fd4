"""Dequantized values and their statistics: the formats' own formulas, checked against the
values the quantizers meant, the original weights, and the formats' libraries where they
install on a CPU machine (bitsandbytes, transformers' FP8 and MXFP4 code, compressed-tensors)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from modelbrowse.core.dequantize import dequantize, estimate_stats, unavailable_reason
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.quantized_weights import QuantizedWeight
from modelbrowse.core.sources.checkpoint import resolve_checkpoint
from modelbrowse.core.stats import compute_stats
from modelbrowse.tui.cli import main
from tests.quantized_support import (
    AWQ_ORDER,
    SCHEMES,
    as_int32,
    error_bound,
    gptq,
    mxfp4,
    write_quantized,
)

Q_PROJ = "model.layers.0.self_attn.q_proj"
# The largest quantization error, relative to the largest magnitude of a weight.
BOUNDS = {
    "gptq": 0.07,
    "awq": 0.07,
    "bnb-nf4": 0.15,
    "bnb-fp4": 0.17,
    "bnb-int8": 0.005,
    "fp8": 0.07,
    "mxfp4": 0.25,
    "compressed": 0.08,
}


def weights(folder: Path) -> NodeIndex:
    source = resolve_checkpoint(str(folder), {}, None, None, None)
    return NodeIndex(source.build_structure(0)[0])


def weight_at(folder: Path, key: str) -> QuantizedWeight:
    node = weights(folder).node(key)
    assert isinstance(node.obj, QuantizedWeight)
    return node.obj


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dequantized_values_are_those_the_format_stores(tmp_path: Path, scheme: str) -> None:
    model = write_quantized(tmp_path / scheme, scheme)
    index = weights(model.folder)
    for key, expected in model.expected.items():
        values = dequantize(index.node(key).obj)
        assert values.dtype == torch.float32 and values.shape == expected.shape
        torch.testing.assert_close(values, expected.float(), rtol=1e-6, atol=1e-7)
        assert error_bound(model.state[key], values) < BOUNDS[scheme], key
    weight = index.node(f"{Q_PROJ}.weight").obj
    got, want = compute_stats(weight), compute_stats(model.expected[f"{Q_PROJ}.weight"])
    assert (got.numel, got.histogram, got.zero_fraction) == (
        want.numel,
        want.histogram,
        want.zero_fraction,
    )
    for name in ("mean", "std", "min", "max"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-5, abs=1e-7)
    original = compute_stats(model.state[f"{Q_PROJ}.weight"])
    assert got.std == pytest.approx(original.std, rel=0.1)  # what the weights were, near enough


def write_layer(folder: Path, pieces: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """One quantized layer `layer` in a folder with its quantization config."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({f"layer.{k}": v.contiguous() for k, v in pieces.items()}, folder / "w.safetensors")
    (folder / "config.json").write_text(json.dumps({"quantization_config": config}))
    return folder / "w.safetensors"


def gptqmodel_dequantize(pieces: dict[str, torch.Tensor], bits: int, v1: bool) -> torch.Tensor:
    """GPTQModel's `dequantize_weight` (its torch path for 2, 4 and 8 bits), after the v1 to
    v2 conversion it applies to a `gptq` checkpoint (one added to every packed zero)."""
    qweight, qzeros, scales, g_idx = (pieces[k] for k in ("qweight", "qzeros", "scales", "g_idx"))
    if v1:
        ones = {2: 0b01010101010101010101010101010101, 4: 0x11111111, 8: 0x01010101}[bits]
        qzeros = as_int32(qzeros.long() + ones)
    pack_factor, maxq = 32 // bits, 2**bits - 1
    wf = torch.tensor(list(range(0, 32, bits)), dtype=torch.int32).unsqueeze(0)
    dtype = torch.int16 if bits == 8 else torch.int8
    zeros = torch.bitwise_right_shift(
        torch.unsqueeze(qzeros, 2).expand(-1, -1, pack_factor), wf.unsqueeze(0)
    ).to(dtype)
    zeros = torch.bitwise_and(zeros, maxq).reshape(scales.shape)
    weight = torch.bitwise_and(
        torch.bitwise_right_shift(
            torch.unsqueeze(qweight, 1).expand(-1, pack_factor, -1), wf.unsqueeze(-1)
        ).to(dtype),
        maxq,
    )
    weight = weight.reshape(weight.shape[0] * weight.shape[1], weight.shape[2])
    return (scales.float()[g_idx.long()] * (weight - zeros[g_idx.long()])).T


@pytest.mark.parametrize(
    ("bits", "v1", "act_order"),
    [(4, True, False), (4, True, True), (4, False, False), (8, True, False), (2, True, True)],
)
def test_gptq_matches_gptqmodel_s_dequantization(
    tmp_path: Path, bits: int, v1: bool, act_order: bool
) -> None:
    torch.manual_seed(bits)
    weight = torch.randn(64, 128)
    pieces, expected = gptq(weight, bits=bits, v1=v1, act_order=act_order)
    form = "gptq" if v1 else "gptq_v2"
    config = {"quant_method": "gptq", "bits": bits, "group_size": 32, "checkpoint_format": form}
    path = write_layer(tmp_path, pieces, config)
    values = dequantize(weight_at(path, "layer.weight"))
    torch.testing.assert_close(values, gptqmodel_dequantize(pieces, bits, v1))
    torch.testing.assert_close(values, expected)


def autoawq_dequantize(pieces: dict[str, torch.Tensor], bits: int, group: int) -> torch.Tensor:
    """AutoAWQ's `dequantize_gemm`: unpack columns, undo AWQ's order, `(q - z) * scales`."""
    shifts = torch.arange(0, 32, bits)
    qweight, qzeros = pieces["qweight"], pieces["qzeros"]
    iweights = torch.bitwise_right_shift(qweight[:, :, None], shifts[None, None, :]).to(torch.int8)
    iweights = iweights.view(iweights.shape[0], -1)
    izeros = torch.bitwise_right_shift(qzeros[:, :, None], shifts[None, None, :]).to(torch.int8)
    izeros = izeros.view(izeros.shape[0], -1)
    reverse = [AWQ_ORDER.index(i) for i in range(8)]  # [0, 4, 1, 5, 2, 6, 3, 7]
    order = torch.arange(iweights.shape[-1]).view(-1, 32 // bits)[:, reverse].view(-1)
    iweights = torch.bitwise_and(iweights[:, order], 2**bits - 1)
    izeros = torch.bitwise_and(izeros[:, order], 2**bits - 1)
    scales = pieces["scales"].float().repeat_interleave(group, dim=0)
    return ((iweights - izeros.repeat_interleave(group, dim=0)) * scales).T


def test_awq_matches_autoawq_s_dequantization(tmp_path: Path) -> None:
    model = write_quantized(tmp_path / "m", "awq")
    stored = load_file(model.folder / "model.safetensors")
    index = weights(model.folder)
    for key in model.expected:
        base = key.removesuffix(".weight")
        pieces = {p: stored[f"{base}.{p}"] for p in ("qweight", "qzeros", "scales")}
        torch.testing.assert_close(
            dequantize(index.node(key).obj), autoawq_dequantize(pieces, 4, 32)
        )


def test_fp8_blocks_match_transformers(tmp_path: Path) -> None:
    from transformers.integrations.finegrained_fp8 import _dequantize_fp8_weight

    model = write_quantized(tmp_path / "m", "fp8")
    stored = load_file(model.folder / "model.safetensors")
    index = weights(model.folder)
    for key in model.expected:
        scale = stored[key.removesuffix("weight") + "weight_scale_inv"]
        reference = _dequantize_fp8_weight(stored[key], scale, [32, 32], torch.float32)
        torch.testing.assert_close(dequantize(index.node(key).obj), reference)


def test_mxfp4_experts_match_transformers(tmp_path: Path) -> None:
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    torch.manual_seed(0)
    pieces, expected = mxfp4(torch.randn(4, 96, 64))  # 4 experts of 96 x 64, as gpt-oss
    base = "model.layers.0.mlp.experts.gate_up_proj"
    tensors = {base + suffix: t for suffix, t in pieces.items()}
    tensors[f"{base}_bias"] = torch.zeros(4, 96)
    save_file(tensors, tmp_path / "experts.safetensors")
    weight = weight_at(tmp_path / "experts.safetensors", base)
    assert (weight.shape, weight.count, weight.layout.quantization.scheme) == (
        (4, 96, 64),
        4 * 96 * 64,
        "MXFP4",
    )
    values = dequantize(weight)
    reference = convert_moe_packed_tensors(
        tensors[f"{base}_blocks"], tensors[f"{base}_scales"], dtype=torch.float32
    )
    torch.testing.assert_close(values.transpose(1, 2), reference)  # transformers' [E, in, out]
    torch.testing.assert_close(values, expected)


def test_compressed_tensors_match_its_unpacking(tmp_path: Path) -> None:
    helpers = pytest.importorskip("compressed_tensors.compressors.pack_quantized.helpers")
    model = write_quantized(tmp_path / "m", "compressed")
    stored = load_file(model.folder / "model.safetensors")
    index = weights(model.folder)
    for key in model.expected:
        base = key.removesuffix(".weight")
        packed, scale = stored[f"{base}.weight_packed"], stored[f"{base}.weight_scale"]
        shape = torch.Size(stored[f"{base}.weight_shape"].tolist())
        q = helpers.unpack_from_int32(packed, 4, shape)
        reference = q.float() * scale.float().repeat_interleave(32, dim=1)
        torch.testing.assert_close(dequantize(index.node(key).obj), reference)


def test_bitsandbytes_dequantizes_the_pieces_as_this_app_does(tmp_path: Path) -> None:
    functional = pytest.importorskip("bitsandbytes.functional")
    for scheme in ("bnb-nf4", "bnb-fp4"):
        model = write_quantized(tmp_path / scheme, scheme)
        stored = load_file(model.folder / "model.safetensors")
        index = weights(model.folder)
        for key in model.expected:
            pieces = {k: v for k, v in stored.items() if k.startswith(f"{key}.")}
            state = functional.QuantState.from_dict(pieces, torch.device("cpu"))
            reference = functional.dequantize_4bit(stored[key], state)
            torch.testing.assert_close(dequantize(index.node(key).obj), reference)


@pytest.fixture(scope="module")
def bitsandbytes_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama quantized by transformers and bitsandbytes themselves, on the CPU."""
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig, LlamaForCausalLM

    from tests.quantized_support import tiny_llama

    root = tmp_path_factory.mktemp("bnb")
    config, state, _ = tiny_llama()
    base = LlamaForCausalLM(config)
    base.load_state_dict(state)
    base.save_pretrained(root / "base")
    choices = {
        "nf4": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True
        ),
        "int8": BitsAndBytesConfig(load_in_8bit=True),
    }
    for name, quantization in choices.items():
        quantized = LlamaForCausalLM.from_pretrained(
            root / "base", quantization_config=quantization, device_map="cpu"
        )
        quantized.save_pretrained(root / name)
    return root


def test_files_bitsandbytes_writes_count_and_dequantize_as_it_does(
    bitsandbytes_folders: Path,
) -> None:
    import bitsandbytes.functional as functional

    from tests.quantized_support import tiny_llama

    _, state, params = tiny_llama()
    for name in ("nf4", "int8"):
        folder = bitsandbytes_folders / name
        index = weights(folder)
        assert index.totals().params == params
        stored = load_file(folder / "model.safetensors")
        key = f"{Q_PROJ}.weight"
        values = dequantize(index.node(key).obj)
        if name == "nf4":
            pieces = {k: v for k, v in stored.items() if k.startswith(f"{key}.")}
            qs = functional.QuantState.from_dict(pieces, torch.device("cpu"))
            reference = functional.dequantize_4bit(stored[key], qs)
        else:
            reference = functional.int8_vectorwise_dequant(stored[key], stored[f"{Q_PROJ}.SCB"])
        torch.testing.assert_close(values, reference.float())
        assert error_bound(state[key], values) < BOUNDS[f"bnb-{name}"]


def test_unsupported_schemes_say_so_in_one_line(tmp_path: Path, capsys: Any) -> None:
    pieces = {
        "qweight": torch.zeros(6, 64, dtype=torch.int32),  # 64 inputs at 3 bits
        "qzeros": torch.zeros(2, 6, dtype=torch.int32),
        "scales": torch.ones(2, 64, dtype=torch.float16),
        "g_idx": (torch.arange(64) // 32).int(),
    }
    path = write_layer(tmp_path, pieces, {"quant_method": "gptq", "bits": 3, "group_size": 32})
    weight = weight_at(path, "layer.weight")
    assert weight.count == 64 * 64
    assert unavailable_reason(weight) == "dequantization of GPTQ 3-bit is not supported"
    assert main([str(path), "--print", "--detail", "layer.weight"]) == 0
    out = capsys.readouterr().out
    assert "statistics     dequantization of GPTQ 3-bit is not supported" in out.splitlines()


def test_a_g_idx_naming_missing_groups_has_no_statistics(tmp_path: Path) -> None:
    pieces, _ = gptq(torch.randn(64, 64))
    pieces["g_idx"] = torch.full((64,), 5, dtype=torch.int32)
    path = write_layer(tmp_path, pieces, {"quant_method": "gptq", "bits": 4})
    weight = weight_at(path, "layer.weight")
    assert unavailable_reason(weight) == "its g_idx names groups its scales do not have"


def test_a_file_cut_after_opening_gives_a_reason_not_a_crash(tmp_path: Path) -> None:
    model = write_quantized(tmp_path / "m", "gptq")
    weight = weights(model.folder).node(f"{Q_PROJ}.weight").obj
    os.truncate(model.folder / "model.safetensors", 4096)
    reason = unavailable_reason(weight)
    assert reason is not None and "model.safetensors" in reason, reason


def test_the_estimate_reads_a_few_rows_of_a_big_weight(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weight = torch.randn(1024, 256)
    pieces, expected = gptq(weight, group=64)
    path = write_layer(tmp_path, pieces, {"quant_method": "gptq", "bits": 4, "group_size": 64})
    quantized = weight_at(path, "layer.weight")
    estimate, exact = estimate_stats(quantized), compute_stats(quantized)
    assert estimate.estimated and not exact.estimated
    assert estimate.numel == exact.numel == 1024 * 256
    assert exact.mean == pytest.approx(compute_stats(expected).mean, rel=1e-5, abs=1e-7)
    assert estimate.std == pytest.approx(exact.std, rel=0.1)
