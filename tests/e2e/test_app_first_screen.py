"""A weight file's tree is on screen before torch is imported, and the full open takes its place
without moving the cursor or closing what was open."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
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
    squeeze,
    wait_for,
    wait_for_text,
    wait_loaded,
)

SIZE = (130, 40)


def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "encoder.layers.0.weight": torch.randn(64, 32),
        "encoder.layers.0.bias": torch.randn(64),
        "encoder.layers.1.weight": torch.randn(16, 64),
        "encoder.norm.running_mean": torch.zeros(16),
        "head.weight": torch.randn(10, 16),
    }


@pytest.fixture(params=["safetensors", "pt"])
def weights(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "pt":
        path = tmp_path / "state.pt"
        torch.save(state(), path)
    else:
        path = tmp_path / "model.safetensors"
        save_file(state(), path)
    return path


# Run in a fresh interpreter: torch cannot be imported until the test lets it (a finder on
# sys.meta_path waits), so what is on screen then was drawn without torch.
SCRIPT = """
import asyncio, sys, threading
from importlib.abc import MetaPathFinder

release = threading.Event()

class HoldTorch(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            release.wait(240)
        return None

sys.meta_path.insert(0, HoldTorch())
from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions
from tests.app_support import screen_text, squeeze, wait_for, wait_loaded

async def main():
    app = ModelBrowseApp(AppOptions(sys.argv[1]))
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: "encoder Group" in squeeze(screen_text(app)), 150)
        print("torch loaded:", "torch" in sys.modules)
        print("previewing:", app.session.previewing)
        print("SCREEN", squeeze(screen_text(app)).replace(chr(10), " | "))
        release.set()
        await wait_loaded(pilot, 240)
        print("after:", "torch" in sys.modules, app.session.previewing)

asyncio.run(main())
"""


def run_preview(path: Path, script: str = SCRIPT) -> str:
    """What `script` prints about the app opening `path` in a fresh interpreter."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result.stdout


def test_the_tree_and_its_totals_show_before_torch_is_imported(weights: Path) -> None:
    out = run_preview(weights)
    assert "torch loaded: False" in out
    assert "previewing: True" in out
    screen = next(line for line in out.splitlines() if line.startswith("SCREEN"))
    params = sum(t.numel() for k, t in state().items() if "running" not in k)
    assert f"{params / 1000:.1f}K params" in screen  # the header's totals
    assert "encoder Group" in screen and "head Group" in screen
    assert "after: True False" in out


async def test_the_full_open_takes_the_previews_place_keeping_cursor_and_lines(
    weights: Path, full_open_held: threading.Event
) -> None:
    release = full_open_held
    app = ModelBrowseApp(AppOptions(str(weights)))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.previewing)
        preview = app.session.index
        assert preview is not None
        await pilot.press("j", "l")  # onto encoder, opened
        await wait_for_text(pilot, "layers Group")
        await pilot.press("j", "l", "j")  # encoder.layers, opened, onto layers.0
        await wait_for(
            pilot, lambda: app.query_one("#tree", ModuleTree).cursor_path == "encoder.layers.0"
        )
        shown = squeeze(screen_text(app))
        assert "reading values" not in shown  # a module: nothing to read
        await pilot.press("l", "j")  # layers.0 opened, onto its first tensor: values wait
        await wait_for_text(pilot, "reading values")
        await pilot.press("f")
        await wait_for(pilot, lambda: "still loading" in notifications(app))
        before = squeeze(screen_text(app)).split("\n")[:12]
        cursor = app.query_one("#tree", ModuleTree).cursor_path
        assert cursor in ("encoder.layers.0.weight", "encoder.layers.0.bias")
        release.set()
        await wait_loaded(pilot, 240)
        assert app.session.index is not preview
        assert app.query_one("#tree", ModuleTree).cursor_path == cursor
        await wait_for(pilot, lambda: "reading values" not in screen_text(app))
        after = squeeze(screen_text(app)).split("\n")[:12]
        tree_lines = [line.split("│")[0] for line in before[2:]]
        assert tree_lines == [line.split("│")[0] for line in after[2:]]
        assert "mean" in squeeze(screen_text(app))  # the tensor's statistics, now it has values
