"""`C` in the app: the health check of what is open, its findings listed, enter goes to one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from textual.widgets import OptionList

from modelbrowse.tui.options import AppOptions
from modelbrowse.tui.screens.health import HealthScreen
from modelbrowse.widgets.module_tree import ModuleTree
from tests.app_support import (
    open_app,
    settle,
    wait_for,
    wait_for_notification,
    wait_for_text,
    widget_text,
)
from tests.fixtures.models import TiedNormNet

SIZE = (150, 40)
NORM_AT_INIT = (
    "norm: weight all 1 (8 values), bias all 0 (8 values): as initialised, "
    "a problem only in a trained checkpoint"
)


def write_damaged(path: Path) -> None:
    """TiedNormNet's weights with a NaN planted in proj.weight, its LayerNorm untouched and
    head.weight, tied to embed.weight, stored apart and changed in one place."""
    torch.manual_seed(0)
    state = TiedNormNet().state_dict()
    state["proj.weight"][2, 3] = float("nan")
    state["head.weight"] = state["embed.weight"].clone()
    state["head.weight"][4, 5] += 2.5
    torch.save(state, path)


def findings(screen: HealthScreen) -> list[str]:
    options = screen.query_one(OptionList)
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


@pytest.mark.asyncio
async def test_the_damaged_checkpoint_lists_exactly_what_was_planted(
    tmp_path: Path, models_file: Path
) -> None:
    path = tmp_path / "damaged.pt"
    write_damaged(path)
    options = AppOptions(str(path), arch=f"{models_file}:TiedNormNet")
    async with open_app(options, size=SIZE) as (app, pilot):
        await pilot.press("C")
        await wait_for_text(pilot, "3 problems found in 6 tensors")
        screen = app.screen
        assert isinstance(screen, HealthScreen)
        assert findings(screen) == [
            "nonfinite  proj.weight: 1 NaN and 0 Inf of 64 values, the first at [2, 3]",
            f"norm_init  {NORM_AT_INIT}",
            "tie_broken embed.weight: tied to head.weight in the architecture but different "
            "in the file: largest difference 2.5",
        ]
        title = f"Health check of damaged.pt into {models_file}:TiedNormNet"
        assert widget_text(app, "#health-body").startswith(title)
        # Enter on the second finding closes the screen with the cursor on the LayerNorm.
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, HealthScreen))
        assert app.query_one(ModuleTree).cursor_path == "norm"
        await pilot.press("C")
        await wait_for_text(pilot, "3 problems found in 6 tensors")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, HealthScreen))
        assert app.query_one(ModuleTree).cursor_path == "proj.weight"


@pytest.mark.asyncio
async def test_a_clean_checkpoint_says_so_and_escape_closes(tmp_path: Path) -> None:
    path = tmp_path / "clean.pt"
    torch.manual_seed(0)
    torch.save({"layer.weight": torch.randn(4, 3), "layer.bias": torch.randn(4)}, path)
    async with open_app(str(path), size=SIZE) as (app, pilot):
        before = app.query_one(ModuleTree).cursor_path
        await pilot.press("C")
        shown = await wait_for_text(pilot, "no problems found in 2 tensors")
        assert "note: ties not checked: no architecture (--arch SOURCE names one)" in shown
        screen = app.screen
        assert isinstance(screen, HealthScreen)
        assert findings(screen) == []
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, HealthScreen)
        assert app.query_one(ModuleTree).cursor_path == before


@pytest.mark.asyncio
async def test_a_model_built_from_code_is_checked_in_memory(models_file: Path) -> None:
    async with open_app(f"{models_file}:TiedNormNet", size=SIZE) as (app, pilot):
        await pilot.press("C")
        await wait_for_text(pilot, "1 problem found in 6 tensors")
        screen = app.screen
        assert isinstance(screen, HealthScreen)
        assert "(its tensors in memory)" in widget_text(app, "#health-body")
        # The tie is one tensor in memory: nothing broken, scanned under both names.
        assert findings(screen) == [f"norm_init  {NORM_AT_INIT}"]


@pytest.mark.asyncio
async def test_with_meta_there_is_nothing_to_check() -> None:
    options = AppOptions("alexnet", meta=True)
    async with open_app(options, size=SIZE, loaded=False) as (app, pilot):
        await wait_for(pilot, lambda: app.session.index is not None and not app.session.previewing)
        await pilot.press("C")
        await wait_for_notification(pilot, "--meta: the model has no values to check")
        await settle(pilot)
        assert not isinstance(app.screen, HealthScreen)
