"""The user's own Python files: classes a trusted pickle needs, and how their module is named."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelbrowse.tui.cli import main
from tests.e2e.test_cli import COMMAND

CONVBN = """
import torch
from torch import nn


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv(x))


if __name__ == "__main__":
    torch.save(ConvBN(), "main.pth")
"""

SAVE = """
import runpy

import torch
from convbn import ConvBN

torch.save(ConvBN(), "m.pth")
runpy.run_path("convbn.py", run_name="__main__")  # as `python convbn.py` runs it
"""


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command in `cwd`, with nothing of the user's on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """convbn.py and the m.pth a script beside it saved (`convbn.ConvBN` pickled), and
    main.pth that `python convbn.py` saved (`__main__.ConvBN`). Tests leave it as it is."""
    folder = tmp_path_factory.mktemp("user") / "project"
    folder.mkdir()
    (folder / "convbn.py").write_text(CONVBN)
    (folder / "save.py").write_text(SAVE)
    saved = run([sys.executable, "save.py"], folder)
    assert saved.returncode == 0, saved.stderr
    return folder


def test_a_trusted_pickle_finds_its_class_beside_the_file(project: Path) -> None:
    for cwd, path in ((project, "m.pth"), (project.parent, "project/m.pth")):
        result = run([str(COMMAND), path, "--trust-pickle", "--print"], cwd)
        assert result.returncode == 0, result.stderr
        lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
        assert "(root) ConvBN 240" in lines
        assert "conv Conv2d 224" in lines


def weights_elsewhere(project: Path, tmp_path: Path) -> Path:
    """A folder of its own holding a copy of m.pth, without convbn.py."""
    elsewhere = tmp_path / "weights"
    elsewhere.mkdir()
    shutil.copy(project / "m.pth", elsewhere / "m.pth")
    return elsewhere


def test_a_trusted_pickle_finds_its_class_in_the_working_directory(
    project: Path, tmp_path: Path
) -> None:
    elsewhere = weights_elsewhere(project, tmp_path)
    result = run([str(COMMAND), str(elsewhere / "m.pth"), "--trust-pickle", "--print"], project)
    assert result.returncode == 0, result.stderr
    assert "ConvBN" in result.stdout


def test_a_class_nowhere_to_be_found_says_how_to_fix_it(project: Path, tmp_path: Path) -> None:
    elsewhere = weights_elsewhere(project, tmp_path)
    result = run([str(COMMAND), "m.pth", "--trust-pickle", "--print"], elsewhere)
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "modelbrowse: error: cannot load m.pth: its classes are in the module 'convbn', which "
        f"is neither beside the file nor in the working directory ({elsewhere}): run "
        "modelbrowse from the folder that holds convbn.py (or convbn/), or add that folder to "
        "PYTHONPATH"
    ]
    env_run = subprocess.run(
        [str(COMMAND), "m.pth", "--trust-pickle", "--print"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert env_run.returncode == 0, env_run.stderr  # as the line says


def test_a_class_pickled_from_a_script_run_directly_says_how_to_fix_it(project: Path) -> None:
    result = run([str(COMMAND), "main.pth", "--trust-pickle", "--print"], project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "modelbrowse: error: cannot load main.pth: its class ConvBN was pickled from a script "
        "run directly (__main__.ConvBN), which no other program can import: in that script "
        "save model.state_dict() and open that file with --arch SCRIPT.py:ConvBN"
    ]


def test_a_class_from_a_file_is_shown_with_the_files_stem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "convbn.py").write_text(CONVBN)
    assert main([f"{tmp_path}/convbn.py:ConvBN", "--print", "--detail", ""]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert lines[2:4] == ["class ConvBN", "convbn"]
