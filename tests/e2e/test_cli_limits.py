"""The command line on hostile input: a config.toml, a closed standard output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMAND = Path(sys.executable).parent / "modelbrowse"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMMAND), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("theme = " + "[" * 100_000 + "]" * 100_000, "is too large for a config file"),
        ("theme = " + "[" * 5_000 + "]" * 5_000, "is nested too deeply"),
        ("x = " + "{a = " * 1_500 + "1" + "}" * 1_500, "is nested too deeply"),
        ("keys." + ".".join(["a"] * 50_000) + " = 1", "is too large for a config file"),
        ('theme = "nord"\n\x00', "is not valid TOML"),
    ],
    ids=["huge", "deep-arrays", "deep-tables", "deep-dotted-keys", "not-toml"],
)
def test_a_hostile_config_toml_is_one_line_before_the_app_starts(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "modelbrowse" / "config.toml"
    config.parent.mkdir()
    config.write_text(text + "\n")
    for args in (["alexnet"], ["--print-config"]):
        result = run(*args, env={"XDG_CONFIG_HOME": str(tmp_path)})
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"modelbrowse: error: {config} {message}")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("extra", [[], ["--detail", "features.0.weight"]])
def test_print_with_standard_output_closed_exits_quietly(extra: list[str]) -> None:
    result = subprocess.run(
        f"exec {COMMAND} alexnet --print {' '.join(extra)} >&-",
        shell=True,
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stderr == ""


def test_print_into_a_closed_pipe_exits_quietly() -> None:
    reader, writer = os.pipe()
    os.close(reader)  # nobody reads: every write fails with EPIPE
    try:
        result = subprocess.run(
            [str(COMMAND), "alexnet", "--print"],
            stdout=writer,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_print_onto_a_full_disk_is_one_line() -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [str(COMMAND), "alexnet", "--print"],
            stdout=full,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    assert result.returncode == 2
    assert result.stderr == (
        "modelbrowse: error: cannot write to standard output: No space left on device\n"
    )
