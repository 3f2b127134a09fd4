"""The README's two set-up commands, CI running the test one, and every flag in docs/usage.md."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from modelbrowse.tui.parser import build_parser

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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


CPU_ONLY = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"


def test_set_up_says_how_to_install_the_cpu_only_build_first() -> None:
    section = " ".join(README.split("## Set up", 1)[1].split("\n## ", 1)[0].split())
    assert f"without a GPU, install torch's CPU-only build first, with `{CPU_ONLY}`" in section
    assert section.index(CPU_ONLY) > section.index(setup_commands()[0])  # said with it


def test_the_cpu_only_builds_satisfy_the_requirements() -> None:
    """The install keeps a torch it finds only if the CPU builds of the installed versions
    (`2.14.1+cpu`) meet every requirement on torch and torchvision."""
    from importlib.metadata import version

    from packaging.requirements import Requirement
    from packaging.version import Version

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    builds = {name: f"{Version(version(name)).public}+cpu" for name in ("torch", "torchvision")}
    requirements = [Requirement(text) for text in pyproject["project"]["dependencies"]]
    pinned = [r for r in requirements if r.name in builds]
    assert {r.name for r in pinned} == set(builds)
    assert not any(r.extras for r in pinned)  # an extra could ask for CUDA packages
    for requirement in pinned:
        assert requirement.specifier.contains(builds[requirement.name]), requirement


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
