"""The README's two set-up commands, CI running the test one, and every flag in docs/usage.md."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from modelbrowse.tui.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
USAGE = (ROOT / "docs" / "usage.md").read_text()


def setup_commands() -> list[str]:
    section = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_exactly_two_set_up_commands_run_and_test() -> None:
    commands = setup_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    assert commands[0].endswith("modelbrowse alexnet")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert setup_commands()[1] in ci_lines


def test_every_cli_flag_is_documented() -> None:
    flags = [
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and action.help != argparse.SUPPRESS  # --served: internal
    ]
    assert "--print" in flags
    missing = [flag for flag in flags if f"`{flag}" not in USAGE]
    assert not missing, f"flags not in docs/usage.md: {missing}"
