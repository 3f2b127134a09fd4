"""`modelbrowse SOURCE --print --probe`: the probe's table, the first NaN/Inf producer, the
gradients; exit 0 when clean, 1 when a module produced NaN/Inf, 2 on a usage error."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbrowse.tui.cli import main

HEADER = ["module", "class", "#", "output", "shape", "mean", "std", "absmax", "zeros", "dead"]


def test_alexnet_prints_a_row_per_module(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alexnet", "--print", "--probe"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "probe: input 1,3,224,224 (float32), eval mode, forward only: 24 of 24 modules gave a "
        "tensor"
    )
    assert out[2].split() == [*HEADER, "NaN/Inf"]
    rows = {line.split()[0]: line.split() for line in out[3:27]}
    assert rows["(root)"][:4] == ["(root)", "AlexNet", "0", "1x1000"]
    assert rows["features.0"][:4] == ["features.0", "Conv2d", "2", "1x64x55x55"]
    relu = rows["features.1"]
    assert relu[:4] == ["features.1", "ReLU", "3", "1x64x55x55"]
    assert relu[-2].endswith("%") and relu[-1] == "0.0%"  # zeros, then dead channels
    assert len(rows["features.0"]) == 8  # no dead share, no NaN/Inf: the row ends at zeros
    assert out[-1] == "no NaN or Inf in any module's output"


def test_the_planted_nan_is_named_with_its_inputs(
    capsys: pytest.CaptureFixture[str], models_file: Path
) -> None:
    command = [f"{models_file}:NanInThird", "--print", "--probe", "--input-shape", "3,4"]
    assert main(command) == 1
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out[3:9]]
    assert [row[:4] for row in rows] == [
        ["(root)", "NanInThird", "0", "3x2"],
        ["fc1", "Linear", "1", "3x8"],
        ["act1", "ReLU", "2", "3x8"],
        ["fc2", "Linear", "3", "3x8"],
        ["act2", "ReLU", "4", "3x8"],
        ["head", "Linear", "5", "3x2"],
    ]
    assert [row[-1] for row in rows] == ["6/0", "0.0%", "12.5%", "3/0", "3/0", "6/0"]
    act1 = rows[2]
    assert out[-2] == "first NaN/Inf: fc2 (Linear), output 3x8: 3 NaN, 0 Inf"
    assert out[-1] == (
        f"  input 0: 3x8 float32, mean {act1[4]}, std {act1[5]}, absmax {act1[6]}, "
        f"zeros {act1[7]}, NaN 0, Inf 0"
    )


def test_backward_lists_the_unused_branch(
    capsys: pytest.CaptureFixture[str], models_file: Path
) -> None:
    command = [f"{models_file}:UnusedBranch", "--print", "--probe", "--input-shape", "2,4"]
    assert main([*command, "--backward", "--train"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "probe: input 2,4 (float32), train mode, forward and backward: 3 of 8 modules gave a "
        "tensor\n"
    )
    assert [line.split() for line in out.splitlines()[6:8]] == [
        ["aux", "Sequential", "not", "run"],
        ["aux.0", "Linear", "not", "run"],
    ]
    grads = out[out.index("parameter ") :].splitlines()
    assert [line.split()[0] for line in grads[1:5]] == [
        "trunk.weight", "trunk.bias", "head.weight", "head.bias"
    ]  # fmt: skip
    assert grads[6:] == [
        "no gradient: 4 trainable parameter(s)",
        "  aux.0.weight  (module aux.0: Linear)",
        "  aux.0.bias    (module aux.0: Linear)",
        "  aux.2.weight  (module aux.2: Linear)",
        "  aux.2.bias    (module aux.2: Linear)",
    ]
    assert "loss (sum of the output): " in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--probe"], "--probe goes with --print (it prints the probe's table)"),
        (["--train"], "--train goes with --probe"),
        (["--print", "--input", "x.png"], "--input goes with --probe"),
        (["--print", "--target", "y.pt"], "--target goes with --probe --backward"),
        (
            ["--print", "--probe", "--target", "y.pt"],
            "--target is the loss's target: it goes with --backward",
        ),
        (
            ["--print", "--probe", "--meta"],
            "--probe runs the model and --meta builds no values; leave out --meta",
        ),
        (
            ["--print", "--probe", "--summary"],
            "--probe prints its table and exits; leave out --summary",
        ),
    ],
)
def test_flags_that_do_not_go_together_are_one_line(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["alexnet", *extra]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"modelbrowse: error: {message}\n"
    assert captured.out == ""


def test_bad_input_files_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "cat.png"
    assert main(["alexnet", "--print", "--probe", "--input", str(missing)]) == 2
    assert capsys.readouterr().err == f"modelbrowse: error: --input {missing}: no such file\n"
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert main(["alexnet", "--print", "--probe", "--backward", "--target", str(notes)]) == 2
    assert capsys.readouterr().err == (
        f"modelbrowse: error: --target {notes}: expected a .safetensors or a .pt file of tensors\n"
    )
