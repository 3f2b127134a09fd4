"""Names and metadata from a file are shown literally: no markup, no escape sequence, no crash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions
from modelbrowse.widgets.module_tree import ModuleTree
from tests.app_support import (
    notifications,
    screen_text,
    settle,
    squeeze,
    wait_for,
    wait_for_text,
)

MARKUP_KEY = "evil[/]key.weight"
ACTION_KEY = "click[@click=app.quit]x.weight"
TITLE_KEY = "bad\x1b]0;pwned\x07name.bias"
CLIPBOARD_KEY = "clip\x1b]52;c;ZXZpbA==\x07board.weight"
LONG_KEY = "deep." * 80 + "weight"
CONTROL = ("\x1b", "\x07", "\x9b")


@pytest.fixture
def hostile_file(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.safetensors"
    tensors = {key: torch.zeros(2, 2) for key in (MARKUP_KEY, ACTION_KEY, TITLE_KEY, CLIPBOARD_KEY)}
    tensors[LONG_KEY] = torch.zeros(3)
    metadata = {"note\x1b[2J": "\x1b]52;c;ZXZpbA==\x07 [b]bold[/b] [/]", "format": "pt"}
    save_file(tensors, path, metadata=metadata)
    return path


def test_print_shows_hostile_names_literally_and_escapes_control_characters(
    hostile_file: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelbrowse.tui", str(hostile_file), "--print"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert not any(c in result.stdout + result.stderr for c in CONTROL)
    assert "evil[/]key" in result.stdout
    assert "click[@click=app.quit]x" in result.stdout
    assert "bad\\x1b]0;pwned\\x07name" in result.stdout
    assert "…" in result.stdout  # the long name is elided
    assert max(len(line) for line in result.stdout.splitlines()) < 400


async def test_the_app_shows_hostile_names_literally_and_keeps_running(
    hostile_file: Path,
) -> None:
    app = ModelBrowseApp(AppOptions(str(hostile_file)))
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: app.session.index is not None)
        screen = await wait_for_text(pilot, "evil[/]key")
        assert "click[@click=app " in screen  # its key splits at the dot, like any other
        screen = await wait_for_text(pilot, "note\\x1b[2J")  # the root's details, once drawn
        assert "bad\\x1b]0;pwned\\x07name" in screen
        assert not any(c in screen_text(app) for c in CONTROL)
        tree = app.query_one(ModuleTree)
        # Each path as the detail pane's heading writes it, once the pane shows it.
        for path, shown in (
            ("bad\x1b]0;pwned\x07name.bias", r"bad\x1b]0;pwned\x07name.bias"),
            ("clip\x1b]52;c;ZXZpbA==\x07board.weight", r"clip\x1b]52;c;ZXZpbA==\x07board.weight"),
        ):
            assert tree.select_path(path)
            await wait_for_text(pilot, f"│ {shown} │")
            assert not any(c in screen_text(app) for c in CONTROL)
        assert tree.select_path(MARKUP_KEY)
        await wait_for_text(pilot, f"│ {MARKUP_KEY} │")
        await pilot.press("d")  # the message quotes the key, markup and all
        await wait_for(
            pilot, lambda: "evil[/]key" in squeeze(screen_text(app)) + notifications(app)
        )
        await pilot.press("s")
        await settle(pilot)
        assert not any(c in screen_text(app) for c in CONTROL)
        assert app.is_running
