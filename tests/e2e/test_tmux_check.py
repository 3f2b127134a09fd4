"""`C` in a real terminal (tmux): the damaged checkpoint's findings, and enter goes to one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.app.test_app_health import write_damaged
from tests.e2e.test_tmux import Terminal, start, terminal, wait_for_file  # noqa: F401

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


def test_the_check_lists_what_was_planted_and_goes_to_it(
    terminal: Terminal,  # noqa: F811
    tmp_path: Path,
    models_file: Path,
) -> None:
    write_damaged(tmp_path / "damaged.pt")
    status = start(
        terminal, tmp_path, "damaged.pt", "--arch", f"{models_file}:TiedNormNet", size=(150, 40)
    )
    terminal.wait_for("norm LayerNorm")
    terminal.keys("C")
    screen = terminal.wait_for("3 problems found in 6 tensors")
    for line in (
        "nonfinite proj.weight: 1 NaN and 0 Inf of 64 values, the first at [2, 3]",
        "norm_init norm: weight all 1 (8 values), bias all 0 (8 values): as initialised",
        "tie_broken embed.weight: tied to head.weight in the architecture but different in the "
        "file: largest difference 2.5",
    ):
        assert line in screen
    terminal.keys("Down", "Enter")
    screen = terminal.wait_for("elementwise_affine=True")  # the LayerNorm's details
    assert "3 problems found" not in screen
    terminal.keys("q")
    assert wait_for_file(status) == "0"
