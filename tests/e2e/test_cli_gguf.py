"""`modelbrowse model.gguf --print`: the metadata, the weights by type and the tree, from the
bytes alone, escaped; `--detail` with the statistics of a dequantized weight; one line for a
damaged file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modelbrowse.tui import cli
from tests.e2e.test_cli_checkpoints import squeezed, the_error_line
from tests.e2e.test_cli_print_structure import printed
from tests.gguf_support import reference_values, write_gguf


@pytest.fixture
def llama(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf", metadata={"general.name": "evil\x1b]0;pwn\x07\nname"})


def test_print_shows_the_metadata_weights_by_type_and_the_tree_without_torch(
    llama: Path,
) -> None:
    code = (
        "import sys\n"
        "from modelbrowse.tui.cli import main\n"
        f"status = main([{str(llama)!r}, '--print'])\n"
        "print(status, [m for m in ('torch', 'textual', 'gguf') if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    lines = squeezed(result.stdout)
    assert lines[-1] == "0 []"
    for expected in (
        "format GGUF v3",
        "architecture llama",
        r"name evil\x1b]0;pwn\x07\nname",
        "context length 2048",
        "layers 2",
        "key-value heads 1",
        "tokenizer llama, vocabulary of 1,000 tokens",
        "file type Q4_K_M",
        "weights Q8_0 3 tensors, 287.7K params, 298.6 KiB (8.5 bits per weight)",
        "weights Q4_K 4 tensors, 163.8K params, 90.0 KiB (4.5 bits per weight)",
        "llama.rope.freq_base 10000",
        "tokenizer.ggml.scores [1,000 float32 values: 0, 0, 0, 0, 0, 0, 0, 0, …]",
        "(root) Weights 478.0K",
        "blk Group 426.5K",
        "blk.0 Group 213.2K",
        "blk.0.attn_q Group 65.5K",
        "output Group 25.6K",
    ):
        assert expected in lines, expected
    assert not any("<tok999>" in line for line in lines)  # never the vocabulary
    assert "Total params: 477,952 (478.0K)" in result.stdout


def test_print_from_the_bytes_is_the_full_opens_text(
    llama: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, full = printed(capsys, monkeypatch, [str(llama), "--print", "--depth", "2"])
    assert fast == full


def test_detail_shows_a_q4_k_weight_and_its_dequantized_statistics(
    llama: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([str(llama), "--print", "--detail", "blk[0].attn_q.weight"]) == 0
    lines = squeezed(capsys.readouterr().out)
    values = reference_values(llama, "blk.0.attn_q.weight").astype(np.float64)
    assert lines[:9] == [
        "blk.0.attn_q.weight",
        "kind parameter",
        "shape (256, 256)",
        "dtype Q4_K (float32 when dequantized)",
        "quantized 4.5 bits per weight, blocks of 256",
        "device cpu",
        "requires_grad True",
        "numel 65,536",
        "size 36.0 KiB",
    ]
    assert "statistics exact" in lines
    assert f"mean {values.mean():.6g}" in lines
    assert f"max {values.max():.6g}" in lines


def test_a_damaged_gguf_file_is_one_line(
    llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(llama.read_bytes()[:3000])
    assert cli.main([str(cut), "--print"]) == 2
    line = the_error_line(capsys.readouterr())
    assert line == (
        f"modelbrowse: error: {cut} is a damaged GGUF file: the metadata array "
        "'tokenizer.ggml.tokens' declares 1,000 items, more than the file holds (truncated?)"
    )


def permuted(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's convert_hf_to_gguf.py `LlamaModel.permute`: q and k rows for its rope."""
    shape = weight.shape
    return (
        weight.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
    )


def converted_llama(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny Hugging Face llama in safetensors, and its GGUF as llama.cpp's converter writes
    it: GGUF names, q and k permuted, 2-D weights in Q8_0, norms in F32."""
    import gguf
    from safetensors.torch import save_file

    torch.manual_seed(0)
    hidden, heads, kv_heads, layers = 64, 4, 2, 2
    state = {"model.embed_tokens.weight": torch.randn(32, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}"
        state[f"{p}.input_layernorm.weight"] = torch.rand(hidden)
        state[f"{p}.self_attn.q_proj.weight"] = torch.randn(hidden, hidden)
        state[f"{p}.self_attn.k_proj.weight"] = torch.randn(hidden // heads * kv_heads, hidden)
        state[f"{p}.mlp.down_proj.weight"] = torch.randn(hidden, 128)
    state["model.norm.weight"] = torch.rand(hidden)
    safetensors = tmp_path / "model.safetensors"
    save_file(state, safetensors)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    writer = gguf.GGUFWriter(tmp_path / "model-Q8_0.gguf", "llama")
    writer.add_block_count(layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    for key, tensor in state.items():
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        assert name is not None
        if "q_proj" in key:
            tensor = permuted(tensor, heads)
        elif "k_proj" in key:
            tensor = permuted(tensor, kv_heads)
        values = tensor.numpy()
        if values.ndim == 2:
            packed = gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(
                name, packed, raw_shape=packed.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0
            )
        else:
            writer.add_tensor(name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tmp_path / "model-Q8_0.gguf", safetensors


def test_diff_against_the_safetensors_it_came_from_maps_names_and_dequantizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gguf_file, safetensors = converted_llama(tmp_path)
    assert cli.main([str(gguf_file), "--diff", str(safetensors), "--print"]) == 1
    lines = capsys.readouterr().out.splitlines()
    changed = [line for line in lines if line and line[0] in "-+!≠~"]
    assert not [line for line in changed if line[:1] in "-+!"]  # every key found its pair
    quantized = {line.split()[1]: line for line in changed}
    assert sorted(quantized) == sorted(
        [f"blk.{i}.{n}.weight" for i in range(2) for n in ("attn_q", "attn_k", "ffn_down")]
        + ["token_embd.weight"]
    )
    for line in quantized.values():
        assert "Q8_0 -> float32, max abs diff" in line, line
        relative = float(line.rpartition("max rel diff ")[2])
        assert 0 < relative < 0.01, line  # Q8_0's rounding; unpermuted q or k would be ~1
    assert lines[-1] == "different: 7 dtype changed, 3 equal"
