"""`modelbrowse CHECKPOINT --print`: what the file holds, how it fits an architecture, and every
problem as one line on stderr with status 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
import torchvision

from modelbrowse.tui.cli import main
from tests.core.test_core_checkpoints import BAD_INPUTS, RunsCode, write_training_checkpoint
from tests.e2e.test_cli import run_command
from tests.fixtures.models import SharedNet

if TYPE_CHECKING:  # what `capsys.readouterr()` returns; pytest 8 does not export its name
    from _pytest.capture import CaptureResult


def squeezed(text: str) -> list[str]:
    """Each line with runs of spaces made one: the columns' widths do not matter here."""
    return [" ".join(line.split()) for line in text.splitlines()]


def the_error_line(captured: CaptureResult[str]) -> str:
    """The one line a failing command writes: on stderr, nothing on stdout, no traceback."""
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("modelbrowse: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resnet") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_print_of_a_training_checkpoint_shows_its_information_then_the_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, _ = write_training_checkpoint(tmp_path)
    assert main([str(path), "--print"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = squeezed(captured.out)
    assert lines[:2] == [
        "format torch",
        "weights from ['model'] (also there: ema; choose with --key)",
    ]
    for row in (
        "epoch 12",
        "optimizer AdamW optimizer state, 2 parameter groups, lr 0.0003",
        "metrics val_acc=0.875",
        "key prefix 'module.' stripped from every key (--keep-prefix keeps it)",
    ):
        assert row in lines
    tree = lines[lines.index("") + 1 :]
    assert tree[:4] == ["(root) Weights 34", "0 Group 16", "1 Group 8", "3 Group 10"]
    assert tree[-1] == "Total params: 34 trainable: 34 frozen: 0 buffers: 9 size: 176 B"


def test_print_with_a_key_and_kept_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, _ = write_training_checkpoint(tmp_path)
    assert main([str(path), "--print", "--key", "ema", "--keep-prefix", "--depth", "1"]) == 0
    lines = squeezed(capsys.readouterr().out)
    assert "weights from ['ema'] (--key)" in lines
    assert "key prefix every key starts with 'module.' (kept)" in lines
    tree = lines[lines.index("(root) Weights 34") :]
    assert tree[:2] == ["(root) Weights 34", "module Group 34"]


def test_print_into_a_bigger_architecture_shows_the_load_report(
    resnet18_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(resnet18_file), "--print", "--arch", "resnet34", "--depth", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = squeezed(captured.out)
    summary = "resnet34: 122 loaded, 96 missing, 0 unexpected, 0 shape mismatches"
    assert lines[:2] == ["format torch", f"fit {summary}"]
    assert summary in lines[2:]
    missing = lines.index("missing from the checkpoint (left as initialised): 96")
    assert lines[missing + 1] == "layer1.2.conv1.weight"
    assert "... and 46 more" in lines
    assert "(root) ResNet 21.8M" in lines
    assert lines[-1].startswith("Total params: 21,797,672 (21.8M)")


def test_print_of_a_file_that_fits_its_architecture_has_no_report(
    resnet18_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(resnet18_file), "--print", "--arch", "resnet18", "--depth", "0"]) == 0
    lines = squeezed(capsys.readouterr().out)
    assert lines[:3] == ["format torch", "fit fits resnet18: all 122 tensors loaded", ""]
    assert lines[3] == "(root) ResNet 11.7M"


def test_print_of_a_trusted_whole_model_warns_that_code_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save(SharedNet(), tmp_path / "whole.pt")
    assert main([str(tmp_path / "whole.pt"), "--print", "--trust-pickle"]) == 0
    lines = squeezed(capsys.readouterr().out)
    assert lines[0] == "format pickled model"
    assert lines[1].startswith(
        "warning: trusted pickle: loading this file ran code from it; "
        "it imports tests.fixtures.models.SharedNet, "
    )
    assert "decoder.proj Linear 72 shared with encoder" in lines


@pytest.mark.parametrize(
    "make", [pytest.param(make, id=name) for name, (make, _) in BAD_INPUTS.items()]
)
def test_bad_input_is_one_line_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], Path]
) -> None:
    path = make(tmp_path)
    assert main([str(path), "--print"]) == 2
    assert path.name in the_error_line(capsys.readouterr())


def backbone_checkpoint(directory: Path) -> Path:
    """SharedNet's weights under `backbone.`, as a detector's checkpoint holds them."""
    path = directory / "detector.pt"
    torch.save({f"backbone.{k}": v for k, v in SharedNet().state_dict().items()}, path)
    return path


def test_an_architecture_no_key_fits_names_the_prefix_and_shows_keys_of_both_sides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], models_file: Path
) -> None:
    path = backbone_checkpoint(tmp_path)
    assert main([str(path), "--print", "--arch", f"{models_file}:SharedNet"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    line, *details = captured.err.splitlines()
    assert line.startswith("modelbrowse: error: none of the 7 tensors")
    assert line.endswith("(--strip-prefix backbone.)")
    assert details == [  # the prefix says what to do: no closest pair besides
        "  checkpoint: backbone.scale, backbone.embed.weight, backbone.encoder.weight, "
        "... (7 keys)",
        "  model:      scale, embed.weight, encoder.weight, ... (7 keys)",
    ]

    assert (
        main(
            [
                str(path),
                "--print",
                "--arch",
                f"{models_file}:SharedNet",
                "--strip-prefix",
                "backbone.",
            ]
        )
        == 0
    )
    lines = squeezed(capsys.readouterr().out)
    assert f"fit fits {models_file}:SharedNet: all 7 tensors loaded" in lines
    assert "(root) SharedNet 152" in lines


LPIPS_LINS = """
from torch import nn


class Lin(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.model = nn.Sequential(nn.Conv2d(channels, 1, 1, bias=False))


class LpipsAlexLins(nn.Module):
    def __init__(self):
        super().__init__()
        for i, channels in enumerate((64, 192, 384, 256, 256)):
            self.add_module(f"lin{i}", Lin(channels))
"""


def test_an_architecture_no_key_fits_shows_the_closest_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LPIPS's alex.pth holds `lin0.model.1.weight` (a Dropout at 0); an architecture written
    without the Dropout names it `lin0.model.0.weight`."""
    (tmp_path / "lins.py").write_text(LPIPS_LINS)
    channels = (64, 192, 384, 256, 256)
    path = tmp_path / "alex.pth"
    torch.save(
        {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(channels)}, path
    )
    assert main([str(path), "--print", "--arch", f"{tmp_path}/lins.py:LpipsAlexLins"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.splitlines() == [
        f"modelbrowse: error: none of the 5 tensors in {path} fit {tmp_path}/lins.py:LpipsAlexLins",
        "  checkpoint: lin0.model.1.weight, lin1.model.1.weight, lin2.model.1.weight, ... (5 keys)",
        "  model:      lin0.model.0.weight, lin1.model.0.weight, lin2.model.0.weight, ... (5 keys)",
        "  closest:    lin0.model.1.weight vs lin0.model.0.weight (5 of 5 keys differ the same "
        "way: model.1 -> model.0)",
    ]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (
            ["--key", "state_dict"],
            "has no such entry (it has: epoch, model, ema, optimizer, metrics)",
        ),
        (["--strip-prefix", "backbone."], "--strip-prefix 'backbone.': no key starts with it"),
        (["--device", "potato"], "--device 'potato' is not a device"),
        (["--kw", "num_classes=10"], "--kw applies to an architecture"),
    ],
)
def test_options_that_do_not_apply_to_the_checkpoint_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    path, _, _ = write_training_checkpoint(tmp_path)
    assert main([str(path), "--print", *extra]) == 2
    assert words in the_error_line(capsys.readouterr())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, _ = write_training_checkpoint(tmp_path)
    assert main([str(path), "--print", "--device", "cuda:0"]) == 2
    line = the_error_line(capsys.readouterr())
    assert line == "modelbrowse: error: --device cuda:0: CUDA is not available on this machine"


def test_a_whole_pickled_model_without_trust_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.save(SharedNet(), tmp_path / "whole.pt")
    assert main([str(tmp_path / "whole.pt"), "--print"]) == 2
    line = the_error_line(capsys.readouterr())
    assert "loading it runs code from the file" in line
    assert line.endswith("Pass --trust-pickle only if you trust where it came from")


# --- the installed command, in a process of its own -----------------------------------------


def test_command_prints_a_training_checkpoint(tmp_path: Path) -> None:
    path, _, _ = write_training_checkpoint(tmp_path)
    result = run_command(str(path), "--print")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "epoch 12" in squeezed(result.stdout)
    assert "Total params: 34" in result.stdout


def test_command_refuses_a_malicious_pickle_even_when_the_environment_forces_unsafe_loads(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": RunsCode(marker)}, tmp_path / "x.pt")
    result = run_command(
        str(tmp_path / "x.pt"), "--print", env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("modelbrowse: error: ")
    assert "--trust-pickle" in lines[0]
    assert not marker.exists()
