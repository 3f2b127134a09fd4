"""`modelbrowse SOURCE --check`: one line per planted problem, and the exit status a CI job
reads (0 clean, 1 found, 2 a usage error)."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from modelbrowse.tui.cli import main
from tests.app.test_app_health import write_damaged
from tests.core.test_health import write_broken_tie
from tests.e2e.test_cli import run_command

RANDOM_NOTE = (
    "note: the values are a random initialisation (--seed 0); --weights or a checkpoint "
    "checks trained ones\n"
)
TIES_NOTE = "note: ties not checked: no architecture (--arch SOURCE names one)\n"


@pytest.fixture(scope="module")
def damaged_alexnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AlexNet's weights with a NaN in features.3.weight, features.8.bias zeroed and
    classifier.6.bias stored a second time as extra.bias."""
    torch.manual_seed(0)
    state = torchvision.models.alexnet().state_dict()
    state["features.3.weight"][1, 2, 3, 4] = float("nan")
    state["features.8.bias"].zero_()
    state["extra.bias"] = state["classifier.6.bias"].clone()
    path = tmp_path_factory.mktemp("damaged") / "alexnet.pth"
    torch.save(state, path)
    return path


def test_alexnet_with_random_weights_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    # PyTorch's default initialisation draws every weight and bias: nothing is constant.
    assert main(["alexnet", "--check"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "no problems found in 16 tensors\n"
    assert captured.err == RANDOM_NOTE


def test_the_damaged_checkpoint_shows_exactly_what_was_planted(
    damaged_alexnet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(damaged_alexnet), "--check"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "nonfinite  features.3.weight: 1 NaN and 0 Inf of 307,200 values, the first at "
        "[1, 2, 3, 4]",
        "zero       features.8.bias: all 256 values are 0",
        "duplicate  classifier.6.bias: the same 1,000 float32 values stored again under extra.bias",
        "3 problems found in 17 tensors",
    ]
    assert captured.err == TIES_NOTE


def test_json_holds_the_same_findings_for_machines(
    damaged_alexnet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(damaged_alexnet), "--check", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1
    report = json.loads(captured.out)
    assert report == {
        "tensors": 17,
        "findings": [
            {
                "kind": "nonfinite",
                "key": "features.3.weight",
                "numbers": {"nan": 1, "inf": 0, "numel": 307200, "first_index": [1, 2, 3, 4]},
            },
            {"kind": "zero", "key": "features.8.bias", "numbers": {"numel": 256}},
            {
                "kind": "duplicate",
                "key": "classifier.6.bias",
                "numbers": {
                    "keys": ["classifier.6.bias", "extra.bias"],
                    "numel": 1000,
                    "dtype": "float32",
                },
            },
        ],
        "skipped": [],
        "notes": [TIES_NOTE.removeprefix("note: ").rstrip()],
    }
    assert captured.err == ""


def test_an_untouched_layer_norm_in_a_tiny_safetensors_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        OrderedDict(proj=nn.Linear(4, 8), norm=nn.LayerNorm(8), head=nn.Linear(8, 2))
    )
    path = tmp_path / "tiny.safetensors"
    save_file(model.state_dict(), str(path))
    assert main([str(path), "--check"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "norm_init  norm: weight all 1 (8 values), bias all 0 (8 values): as initialised, "
        "a problem only in a trained checkpoint",
        "1 problem found in 6 tensors",
    ]


def test_a_broken_tie_with_the_architecture(
    tmp_path: Path, models_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shared.pt"
    write_broken_tie(path)
    assert main([str(path), "--check", "--arch", f"{models_file}:SharedNet"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "constant   scale: all 8 values are 1",
        "tie_broken embed.weight: tied to head.weight in the architecture but different in the "
        "file: largest difference 84",
        "2 problems found in 7 tensors",
    ]
    assert captured.err == ""


def test_the_command_exits_with_the_status(damaged_alexnet: Path) -> None:
    found = run_command(str(damaged_alexnet), "--check")
    assert found.returncode == 1
    assert found.stdout.splitlines()[-1] == "3 problems found in 17 tensors"
    missing = run_command("no-such-file.pt", "--check")
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert missing.stderr == "modelbrowse: error: no such file or directory: no-such-file.pt\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--json"], "--json goes with --check"),
        (["--check", "--print"], "--check prints its report and exits; leave out --print"),
        (
            ["--check", "--diff", "vgg11", "--serve"],
            "--check prints its report and exits; leave out --diff and --serve",
        ),
        (
            ["--check", "--meta"],
            "--check reads every value and --meta builds none; leave out --meta",
        ),
    ],
)
def test_flags_that_do_not_go_with_check_are_a_usage_error(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["alexnet", *flags])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1] == f"modelbrowse: error: {message}"


def test_the_checkpoint_the_app_tests_damage_in_text(
    tmp_path: Path, models_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "damaged.pt"
    write_damaged(path)
    assert main([str(path), "--check", "--arch", f"{models_file}:TiedNormNet"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "nonfinite  proj.weight: 1 NaN and 0 Inf of 64 values, the first at [2, 3]",
        "norm_init  norm: weight all 1 (8 values), bias all 0 (8 values): as initialised, "
        "a problem only in a trained checkpoint",
        "tie_broken embed.weight: tied to head.weight in the architecture but different in the "
        "file: largest difference 2.5",
        "3 problems found in 6 tensors",
    ]
    assert captured.err == ""
