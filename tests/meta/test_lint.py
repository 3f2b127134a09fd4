"""The code passes ruff (lint and format) and mypy --strict on core/, widgets/, tui/ and tests/."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "widgets", "tui")


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


# find_spec, not shutil.which: the venv's bin/ need not be on PATH (`.venv/bin/python -m pytest`).
@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_ruff_lint_and_format() -> None:
    lint = run_tool("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run_tool("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict_on_every_package_and_the_tests(tmp_path: Path) -> None:
    # One run over all four: the tests import the packages, so a second run would check them again.
    (tmp_path / "modelbrowse").mkdir()
    for part in PACKAGES:
        (tmp_path / "modelbrowse" / part).symlink_to(ROOT / part)
    # `tests` is a namespace package (no __init__.py) that the tests import as `tests.app_support`.
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(ROOT / ".mypy_cache"),
            *(arg for part in PACKAGES for arg in ("-p", f"modelbrowse.{part}")),
            "-p", "tests",
        ],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
