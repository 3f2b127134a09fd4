"""Quantized layouts told from their keys and config, and configs and pieces that lie."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modelbrowse.core.reading.quantized_layouts import parse_quant_config
from modelbrowse.core.structure import Structure, read_structure
from modelbrowse.core.structure_index import preview_index
from tests.quantized_support import SCHEMES, gptq, quantize, write_quantized

SCHEME_WORDS = {
    "gptq": ("GPTQ", 4, 32, "GPTQ 4-bit, groups of 32 inputs"),
    "awq": ("AWQ", 4, 32, "AWQ 4-bit, groups of 32 inputs"),
    "bnb-nf4": ("bitsandbytes nf4", 4, 64, "bitsandbytes nf4, blocks of 64, scales quantized too"),
    "bnb-fp4": ("bitsandbytes fp4", 4, 64, "bitsandbytes fp4, blocks of 64, scales quantized too"),
    "bnb-int8": ("bitsandbytes int8", 8, 128, "bitsandbytes int8, one scale per output row"),
    "fp8": ("FP8 block", 8, 32 * 32, "FP8 block, blocks of 32x32"),
    "mxfp4": ("MXFP4", 4, 32, "MXFP4, blocks of 32"),
    "compressed": (
        "compressed-tensors int4",
        4,
        32,
        "compressed-tensors int4, groups of 32 inputs",
    ),
}
Q_PROJ = "model.layers.0.self_attn.q_proj"


def structure_of(folder: Path) -> Structure:
    found = read_structure(str(folder))
    assert found is not None
    return found


def rows(structure: Structure, name: str) -> list[str]:
    return [value for label, value in structure.rows if label == name]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_layout_is_one_logical_weight_per_layer(tmp_path: Path, scheme: str) -> None:
    model = write_quantized(tmp_path / scheme, scheme)
    structure = structure_of(model.folder)
    assert structure.quantized_keys is not None
    layouts = structure.quantized_keys.layouts
    assert set(layouts) == set(model.expected)  # the 14 linear weights of the layers
    down = layouts["model.layers.1.mlp.down_proj.weight"].quantization
    name, bits, group, words = SCHEME_WORDS[scheme]
    assert (down.scheme, down.bits, down.group_size) == (name, bits, group)
    assert down.logical_shape == tuple(model.state["model.layers.1.mlp.down_proj.weight"].shape)
    # every stored key is either a piece of one layer or shown as it is
    pieces = {p for layout in layouts.values() for p in layout.quantization.pieces}
    assert pieces == set(structure.quantized_keys.owner)
    assert rows(structure, "quantization") == [f"{words}: 14 weights (config.json)"]


def test_gptq_without_a_config_is_told_by_its_shapes(tmp_path: Path) -> None:
    model = write_quantized(tmp_path / "m", "gptq")
    data = json.loads((model.folder / "config.json").read_text())
    del data["quantization_config"]
    (model.folder / "config.json").write_text(json.dumps(data))
    structure = structure_of(model.folder)
    assert structure.quantized_keys is not None
    layout = structure.quantized_keys.layouts[f"{Q_PROJ}.weight"]
    assert (layout.method, layout.quantization.bits, layout.quantization.group_size) == (
        "gptq",
        4,
        32,
    )
    assert rows(structure, "quantization") == ["GPTQ 4-bit, groups of 32 inputs: 14 weights"]


def test_awq_and_gptq_are_told_apart_by_their_shapes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weight = torch.randn(64, 128)
    pieces = {f"a.{k}": v for k, v in quantize("awq", weight)[0].items()}
    pieces |= {f"g.{k}": v for k, v in quantize("gptq", weight)[0].items() if k != "g_idx"}
    save_file(pieces, tmp_path / "mixed.safetensors")
    structure = structure_of(tmp_path / "mixed.safetensors")
    assert structure.quantized_keys is not None
    found = {k: v.method for k, v in structure.quantized_keys.layouts.items()}
    assert found == {"a.weight": "awq", "g.weight": "gptq"}
    assert structure.quantized_keys.layouts["g.weight"].quantization.logical_shape == (64, 128)


@pytest.mark.parametrize(
    ("entry", "row"),
    [
        ({"bits": "4"}, "config.json: bits '4' is not usable, not used"),
        ({"group_size": 0}, "config.json: group_size 0 is not usable, not used"),
        ({"bits": True}, "config.json: bits True is not usable, not used"),
        ({"quant_method": ["gptq"]}, "config.json: quant_method is not a short string, not used"),
        ({"weight_block_size": [0, 1e309]}, "is not two sizes, not used"),
    ],
)
def test_unusable_config_values_are_named_and_the_shapes_decide(
    tmp_path: Path, entry: dict[str, object], row: str
) -> None:
    config = {"quant_method": "gptq", "bits": 4, "group_size": 32, **entry}
    model = write_quantized(tmp_path / "m", "gptq", config)
    structure = structure_of(model.folder)
    assert any(row in value for value in rows(structure, "quantization config"))
    assert structure.quantized_keys is not None and len(structure.quantized_keys.layouts) == 14


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"quant_method": "gptq", "bits": 3}, "do not fit GPTQ"),
        ({"quant_method": "gptq", "bits": 4, "group_size": 7}, "group_size 7 needs"),
        ({"quant_method": "awq", "bits": 4}, "do not fit AWQ"),
    ],
)
def test_a_config_that_contradicts_the_shapes_leaves_the_keys_as_stored(
    tmp_path: Path, config: dict[str, object], problem: str
) -> None:
    model = write_quantized(tmp_path / "m", "gptq", config)
    structure = structure_of(model.folder)
    assert structure.quantized_keys is not None and not structure.quantized_keys.layouts
    (stored,) = rows(structure, "quantized keys")
    assert stored.startswith("shown as stored: ") and problem in stored
    assert stored.endswith("(and 13 more)")
    assert f"{Q_PROJ}.qweight" in structure.tensors


def test_a_config_that_is_not_an_object_is_ignored_with_a_row(tmp_path: Path) -> None:
    model = write_quantized(tmp_path / "m", "gptq", [1, 2])  # type: ignore[arg-type]
    structure = structure_of(model.folder)
    assert rows(structure, "quantization config") == ["config.json: not a JSON object, not used"]
    assert structure.quantized_keys is not None  # told by the shapes


def test_escape_sequences_in_a_config_are_shown_escaped(tmp_path: Path) -> None:
    config = {"quant_method": "gptq", "bits": 4, "checkpoint_format": "\x1b[31mred\x07"}
    model = write_quantized(tmp_path / "m", "gptq", config)
    structure = structure_of(model.folder)
    assert structure.quantized_keys is not None
    reason = structure.quantized_keys.layouts[f"{Q_PROJ}.weight"].unsupported
    assert reason == "dequantization of GPTQ (\\x1b[31mred\\x07 format) is not supported"
    assert reason.isprintable()


def test_parse_quant_config_reads_autoawq_and_compressed_tensors_fields() -> None:
    awq = parse_quant_config({"w_bit": 4, "q_group_size": 128, "zero_point": True}, "q.json")
    assert (awq.method, awq.bits, awq.group_size) == ("awq", 4, 128)
    nested: dict[str, object] = {"weights": {"num_bits": 8}}
    groups = {"config_groups": {"a": nested, "b": "junk", "c": {"weights": {"num_bits": 99}}}}
    assert parse_quant_config(groups, "c").group_bits == frozenset({8})


def rewrite(folder: Path, change: dict[str, torch.Tensor | None]) -> None:
    """The folder's weights with some keys replaced (None: removed)."""
    tensors = load_file(folder / "model.safetensors")
    for key, value in change.items():
        if value is None:
            tensors.pop(key)
        else:
            tensors[key] = value
    save_file(tensors, folder / "model.safetensors")


def state_bytes(state: dict[str, object]) -> torch.Tensor:
    return torch.tensor(list(json.dumps(state).encode()), dtype=torch.uint8)


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [1 << 40]},
         "packed bytes cannot hold shape"),
        ({"quant_type": "nf4", "blocksize": 3, "dtype": "float32", "shape": [64, 64]},
         "no usable shape, blocksize and dtype"),
        ({"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [64, 64]},
         "is not a nf4 state"),
        ({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 64],
          "nested_blocksize": 256, "nested_offset": float("nan")},
         "double-quantized absmax does not fit"),
        ("not a dict", "is not a nf4 state"),
    ],
)  # fmt: skip
def test_a_lying_bitsandbytes_quant_state_is_one_line(
    tmp_path: Path, state: object, problem: str
) -> None:
    model = write_quantized(tmp_path / "m", "bnb-nf4")
    key = f"{Q_PROJ}.weight.quant_state.bitsandbytes__nf4"
    rewrite(model.folder, {key: state_bytes(state)})  # type: ignore[arg-type]
    structure = read_structure(str(model.folder))
    assert structure is not None and preview_index(structure) is None  # `weight` and a prefix
    result = run_print(model.folder)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "cannot be shown as a tree (a quantized layer left as stored keys: " in result.stderr
    assert problem in result.stderr


@pytest.mark.parametrize(
    ("data", "problem"),
    [(b"\xff\xfe{}", "is not UTF-8 text"), (b"{" * 70_000, "where at most 65,536 are expected")],
)
def test_a_quant_state_that_is_not_small_json_is_refused(
    tmp_path: Path, data: bytes, problem: str
) -> None:
    model = write_quantized(tmp_path / "m", "bnb-nf4")
    key = f"{Q_PROJ}.weight.quant_state.bitsandbytes__nf4"
    rewrite(model.folder, {key: torch.frombuffer(bytearray(data), dtype=torch.uint8)})
    assert problem in quantized_rows_of_full_open(model.folder)


def quantized_rows_of_full_open(folder: Path) -> str:
    """The row a lying layer leaves, read as the full open reads the tensors."""
    from modelbrowse.core.sources.quantized_tensors import quantized_tensors

    found = quantized_tensors(load_file(folder / "model.safetensors"), folder)
    return "\n".join(value for label, value in found.rows if label == "quantized keys")


def run_print(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelbrowse.tui", str(folder), "--print"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lying_compressed_tensors_and_fp8_pieces_stay_as_stored(tmp_path: Path) -> None:
    compressed = write_quantized(tmp_path / "c", "compressed")
    shape = torch.tensor([64, 1 << 39], dtype=torch.int64)  # claims 2**45 weights
    rewrite(compressed.folder, {f"{Q_PROJ}.weight_shape": shape})
    structure = structure_of(compressed.folder)
    assert structure.quantized_keys is not None and len(structure.quantized_keys.layouts) == 13
    assert "fits no bit width of its shape" in rows(structure, "quantized keys")[0]
    fp8 = write_quantized(tmp_path / "f", "fp8")
    rewrite(fp8.folder, {f"{Q_PROJ}.weight_scale_inv": torch.ones(3, 5)})
    structure = structure_of(fp8.folder)
    assert "fits no block size of [64, 64]" in rows(structure, "quantized keys")[0]


def test_a_logical_key_that_is_already_a_tensor_leaves_the_layer_as_stored(
    tmp_path: Path,
) -> None:
    model = write_quantized(tmp_path / "m", "gptq")
    rewrite(model.folder, {f"{Q_PROJ}.weight": torch.zeros(2)})
    structure = structure_of(model.folder)
    found = structure.quantized_keys
    assert found is not None and f"{Q_PROJ}.weight" not in found.layouts
    assert (
        "is also the name of another tensor or its prefix" in rows(structure, "quantized keys")[0]
    )


def test_gptq_pieces_with_a_wrong_g_idx_are_refused(tmp_path: Path) -> None:
    pieces, _ = gptq(torch.randn(64, 64))
    pieces["g_idx"] = torch.zeros(10, dtype=torch.int32)
    save_file({f"l.{k}": v for k, v in pieces.items()}, tmp_path / "g.safetensors")
    structure = structure_of(tmp_path / "g.safetensors")
    assert structure.quantized_keys is not None and not structure.quantized_keys.layouts
    assert rows(structure, "quantized keys") == [
        "shown as stored: 'l': its qweight [8, 64] and scales do not fit GPTQ"
    ]
