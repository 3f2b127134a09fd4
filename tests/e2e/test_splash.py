"""The first frame painted before Textual is imported: the same cells as Textual's own first
frame, only where the app would lay it out so, and the terminal handed over intact."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from modelbrowse.tui import splash_styles
from modelbrowse.tui.splash import color_system, escape_codes, first_frame
from tests.e2e.test_tmux import COMMAND, Terminal, terminal, wait_for_file
from tests.splash_support import Cell, look_of, styles_module, textual_cells

__all__ = ["terminal"]  # the fixture, used by the tmux tests below


def splash_cells(width: int, height: int, label: str) -> list[list[Cell]]:
    from rich.style import Style

    frame = first_frame(width, height, label)
    assert frame is not None
    rows: list[list[Cell]] = []
    for row in frame:
        cells: list[Cell] = []
        for text, name in row:
            fg, bg, bold, italic = splash_styles.LOOKS[name]
            style = Style(color=fg, bgcolor=bg, bold=bold, italic=italic)
            cells += [(char, look_of(style, char)) for char in text]
        rows.append(cells)
    return rows


@pytest.mark.parametrize(
    ("width", "height", "label"),
    [
        (120, 40, "alexnet"),
        (70, 10, "alexnet"),
        (71, 24, "vit_b_16"),
        (97, 30, "./models/net.py:Net"),
        (201, 51, "resnet50 vs resnet50-edited.pt"),
        (70, 12, "x" * 39),  # the header just fits
    ],
)
def test_the_splash_is_textual_first_frame_cell_for_cell(
    width: int, height: int, label: str
) -> None:
    expected = textual_cells(width, height, label)
    found = splash_cells(width, height, label)
    assert len(found) == len(expected) == height
    for y, (got, want) in enumerate(zip(found, expected, strict=True)):
        assert got == want, f"row {y} differs:\n{''.join(c for c, _ in got)}\n" + "".join(
            c for c, _ in want
        )


def test_the_splash_styles_are_textual_current_ones() -> None:
    """Fails after a Textual upgrade that changes the theme: write the module again with
    `python -m tests.splash_support > tui/splash_styles.py` (then `ruff format`)."""
    fresh: dict[str, object] = {}
    exec(styles_module(), fresh)
    assert fresh["LOOKS"] == splash_styles.LOOKS
    assert fresh["SGR"] == splash_styles.SGR


@pytest.mark.parametrize(
    ("width", "height", "label"),
    [
        (69, 40, "alexnet"),  # the panes stack
        (120, 9, "alexnet"),  # too small: one line says so
        (70, 40, "x" * 40),  # the header wraps
    ],
)
def test_no_splash_where_the_app_lays_the_frame_out_otherwise(
    width: int, height: int, label: str
) -> None:
    assert first_frame(width, height, label) is None


@pytest.mark.parametrize(
    ("env", "system"),
    [
        ({"TERM": "xterm-256color"}, "256"),
        ({"TERM": "xterm-256color", "COLORTERM": "truecolor"}, "truecolor"),
        ({"TERM": "screen", "COLORTERM": "24bit"}, "truecolor"),
        ({"TERM": "xterm-kitty"}, "256"),
        ({"TERM": "xterm"}, "standard"),
        ({"TERM": "dumb"}, None),
        ({}, None),
        ({"TERM": "xterm", "TEXTUAL_COLOR_SYSTEM": "truecolor"}, "truecolor"),
        ({"TERM": "xterm-256color", "TEXTUAL_COLOR_SYSTEM": "windows"}, None),
    ],
)
def test_the_colour_system_is_the_one_textual_will_use(
    env: dict[str, str], system: str | None
) -> None:
    assert color_system(env) == system


def test_the_escape_codes_place_every_row_and_reset_each_run() -> None:
    frame = first_frame(80, 12, "alexnet")
    assert frame is not None
    codes = escape_codes(frame, "256")
    assert codes.startswith("\x1b[?1049h\x1b[?25l\x1b[?7l")
    assert all(f"\x1b[{y};1H" in codes for y in range(1, 13))
    assert "\x1b[0;1;38;5;80;48;5;17malexnet" in codes  # bold cyan name, nothing carried over
    assert codes.endswith("\x1b[0m")


# --- in a real terminal ------------------------------------------------------------------


def run_with_modes(terminal: Terminal, tmp_path: Path, *args: str) -> Path:
    """Run the command in a shell that records the terminal's settings before and after."""
    status = tmp_path / "status"
    line = " ".join([str(COMMAND), *args])
    script = (
        f"cd {tmp_path} && stty -a > before.txt && {line}; echo $? > {status}; "
        "stty -a > after.txt; sleep 60"
    )
    subprocess.run(
        ["tmux", "-L", terminal.socket, "new-session", "-d", "-s", terminal.session,
         "-x", "120", "-y", "40", script],
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TERM": "xterm-256color"},
    )  # fmt: skip
    return status


pytestmark_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


@pytestmark_tmux
@pytest.mark.tmux
def test_the_splash_shows_at_once_and_textual_takes_over(
    terminal: Terminal, tmp_path: Path
) -> None:
    status = run_with_modes(terminal, tmp_path, "alexnet")
    screen = terminal.wait_for("loading torch…", timeout=30)
    assert "q Quit : Go to / Filter" in screen and "▏^p palette" in screen
    terminal.keys("x", "y")  # typed over the splash: not echoed over the frame
    screen = terminal.wait_for("[random init]")
    assert "xy" not in screen
    terminal.keys("q")
    assert wait_for_file(status) == "0"
    assert (tmp_path / "before.txt").read_text() == wait_for_settings(tmp_path / "after.txt")
    modes = terminal.tmux("display", "-p", "-t", terminal.session, "#{alternate_on}")
    assert modes.strip() == "0"


@pytestmark_tmux
@pytest.mark.tmux
def test_ctrl_c_at_the_splash_gives_the_terminal_back(terminal: Terminal, tmp_path: Path) -> None:
    status = run_with_modes(terminal, tmp_path, "alexnet")
    terminal.wait_for("loading torch…", timeout=30)
    terminal.keys("C-c")  # before or after Textual takes over: either way, as it was
    # On the splash it is SIGINT (130); once the app has the keys, ctrl+c is its quit key and,
    # with nothing unsaved, a normal quit (0). Which one it hits is a race with the handover.
    assert wait_for_file(status) in ("130", "0")
    assert (tmp_path / "before.txt").read_text() == wait_for_settings(tmp_path / "after.txt")
    screen = terminal.screen()
    assert "loading torch" not in screen and "Traceback" not in screen


def wait_for_settings(path: Path) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (path.exists() and path.read_text()):
        time.sleep(0.05)
    return path.read_text()
