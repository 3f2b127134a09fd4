"""Example inputs on the command line: `--print --summary`, dtypes for token models, the hint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modelbrowse.tui.cli import main

if TYPE_CHECKING:  # what `capsys.readouterr()` returns; pytest 8 does not export its name
    from _pytest.capture import CaptureResult

FIRST_LAYERS = """
from torch import nn


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.fc2 = nn.Linear(20, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x))


class Audio(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3)

    def forward(self, x):
        return self.conv(x)


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, ids):
        return self.out(self.embed(ids))
"""


@pytest.fixture
def first_layers(tmp_path: Path) -> Path:
    """A file of small models that differ in their first layer."""
    path = tmp_path / "first_layers.py"
    path.write_text(FIRST_LAYERS)
    return path


def error_line(captured: CaptureResult[str]) -> str:
    lines = captured.err.splitlines()
    assert captured.out == "" and len(lines) == 1, captured
    assert lines[0].startswith("modelbrowse: error: ")
    return lines[0].removeprefix("modelbrowse: error: ")


def test_a_bert_folder_is_summarised_for_token_ids(
    bert_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(bert_folder), "--print", "--summary", "--input-shape", "1,16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("torchinfo summary for input 1,16 (int64)\n")
    assert "Embedding (word_embeddings)" in out
    assert "BertModel (BertModel)" in out and "[1, 16, 32]" in out
    assert "Total params: 17,834" in out


def test_float_ids_fail_with_the_whole_reason(
    bert_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([str(bert_folder), "--print", "--summary", "--input-shape", "1,16:float"])
    assert status == 2
    line = error_line(capsys.readouterr())
    assert line.startswith("summary failed for input 1,16: RuntimeError: Expected tensor for ")
    assert line.endswith(
        "but got torch.FloatTensor instead (while checking arguments for embedding)"
    )


@pytest.mark.parametrize(
    ("extra", "title"),
    [
        ([], "input 2,5 (int64)"),  # the first layer is an Embedding
        (["--input-dtype", "int"], "input 2,5 (int32)"),
        (["--input-dtype", "float"], None),  # asked for: it fails
    ],
)
def test_an_embedding_first_takes_integers_unless_told_otherwise(
    first_layers: Path, capsys: pytest.CaptureFixture[str], extra: list[str], title: str | None
) -> None:
    args = [f"{first_layers}:Tokens", "--print", "--summary", "--input-shape", "2,5", *extra]
    status = main(args)
    captured = capsys.readouterr()
    if title is None:
        assert status == 2
        assert "summary failed for input 2,5: RuntimeError: Expected tensor" in error_line(captured)
        return
    assert status == 0, captured.err
    assert captured.out.startswith(f"torchinfo summary for {title}\n")
    assert "Linear (out)" in captured.out and "[2, 5, 3]" in captured.out


def test_each_input_can_have_its_own_dtype(
    first_layers: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [f"{first_layers}:Mlp", "--print", "--summary", "--input-shape", "3,10:double"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("torchinfo summary for input 3,10 (float64)\n")
    assert "Linear (fc2)" in out and "[3, 2]" in out
    args[-1] = "3,10:float"
    assert main([*args, "--input-dtype", "long"]) == 0  # its own dtype wins
    assert capsys.readouterr().out.startswith("torchinfo summary for input 3,10\n")


@pytest.mark.parametrize(
    ("name", "hint"),
    [("Mlp", "1,10"), ("Audio", "1,2,64"), ("Tokens", "1,16:long")],
)
def test_without_an_input_the_hint_fits_the_first_layer(
    first_layers: Path, capsys: pytest.CaptureFixture[str], name: str, hint: str
) -> None:
    assert main([f"{first_layers}:{name}", "--print", "--summary"]) == 2
    line = error_line(capsys.readouterr())
    assert line == f"no example input for this model: give --input-shape {hint}"
    assert main([f"{first_layers}:{name}", "--print", "--summary", "--input-shape", hint]) == 0
    assert capsys.readouterr().out.startswith("torchinfo summary for input 1,")


def test_a_zoo_model_keeps_its_default_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alexnet", "--print", "--summary"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("torchinfo summary for input 1,3,224,224\n")
    assert "Total params: 61,100,840" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--input-dtype", "lng"],
            "--input-dtype expects one of long, int, float, half, bfloat16, double, bool "
            "(or torch's names: int64, ...), got 'lng'",
        ),
        (
            ["--input-shape", "1,16:lng"],
            "--input-shape SHAPE:DTYPE expects one of long, int, float, half, bfloat16, double, "
            "bool (or torch's names: int64, ...), got 'lng'",
        ),
        (
            ["--input-shape", "1,a:long"],
            "--input-shape expects positive integers such as 1,3,224,224, got '1,a:long'",
        ),
        (
            ["--input-shape", "100000,3,224,224", "--probe"],
            "--input-shape 100000,3,224,224 is 15,052,800,000 values (56.1 GiB as float32); "
            "an example input holds at most 268,435,456 (a smaller batch shows the same)",
        ),
    ],
)
def test_a_bad_input_is_one_line_before_anything_opens(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["no-such-model", "--print", *args]) == 2
    assert error_line(capsys.readouterr()) == message


def test_summary_goes_with_print(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["alexnet", "--summary"])
    assert exited.value.code == 2
    assert "--summary goes with --print" in capsys.readouterr().err
