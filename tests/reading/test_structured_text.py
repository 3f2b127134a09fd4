"""Small JSON and TOML files from untrusted places: refused in one line, in bounded time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.limits import Limits
from modelbrowse.core.reading.structured_text import read_json, read_toml


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "recipe.json"
    os.mkfifo(fifo)
    with pytest.raises(ReadError, match="not a regular file"):
        read_json(fifo)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"n": ' + "9" * 5000 + "}", "not usable JSON"),
        ('{"a": 1,}', "not valid JSON"),
    ],
)
def test_hostile_json_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(ReadError, match=message) as caught:
        read_json(path)
    assert "\n" not in str(caught.value)


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text("[" + "0," * 1000 + "0]")
    with pytest.raises(ReadError, match="too large"):
        read_json(path, limits=Limits(text_bytes=100))


def test_deep_toml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    with pytest.raises(ReadError, match=r"nested too deeply|not valid TOML"):
        read_toml(path)


def test_plain_json_reads(tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text('{"a": [1, 2.5, "x"]}')
    assert read_json(path) == {"a": [1, 2.5, "x"]}


def test_a_read_error_quoting_a_name_from_a_file_stays_one_line() -> None:
    error = ReadError("x.pt holds a evil\nname\x1b[31m where a tensor goes")
    assert "\n" not in str(error) and "\x1b" not in str(error)
    assert "evil\\nname\\x1b[31m" in str(error)
