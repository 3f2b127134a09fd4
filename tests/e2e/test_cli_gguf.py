"""`modelbrowse model.gguf --print`: the metadata, the weights by type and the tree, from the
bytes alone, escaped; `--detail` with the statistics of a dequantized weight; one line for a
damaged file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
