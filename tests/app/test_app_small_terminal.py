"""Every screen readable at 80x24 and 120x40 (Pilot): values wrap at separators, never inside a
number or a name; no key, cell or status is cut; the screens over the tree say how to leave."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch
from textual.pilot import Pilot

from modelbrowse.tui.options import AppOptions
from modelbrowse.tui.screens.path_dialog import PathInput
from modelbrowse.widgets.status_line import POINTER, StatusLine
from tests.app_support import (
    open_app,
    screen_text,
    squeeze,
    unwrapped,
    wait_for,
    wait_for_text,
    widget_text,
)

SIZES = [(80, 24), (120, 40)]
IDS = ["80x24", "120x40"]


def footer(pilot: Pilot[None]) -> str:
    return squeeze(screen_text(pilot.app).splitlines()[-1]).strip()


async def goto(pilot: Pilot[None], path: str) -> None:
    await pilot.press("colon", *path, "enter")
    await wait_for(pilot, lambda: widget_text(pilot.app, "#detail").startswith(path))


async def whole_pane(pilot: Pilot[None]) -> str:
    """The detail pane at its top, then scrolled to its end (as tab, end shows it)."""
    top = widget_text(pilot.app, "#detail")
    await pilot.press("tab", "end")
    await pilot.pause()
    end = widget_text(pilot.app, "#detail")
    await pilot.press("home", "shift+tab")
    return f"{top}\n{end}"


def split_numbers(text: str) -> list[str]:
    """Places where a line ends inside a number: a digit, then a digit (or `,5`) next line."""
    return re.findall(r"\d[ \t]*\n[ \t]*[\d,]\d", text)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((80, 24), "q Quit : Go to / Filter f Freeze e Replace u Undo L Log w Write ? Help ▏^p"),
        (
            (120, 40),
            "q Quit : Go to / Filter f Freeze e Replace u Undo L Log w Write ? Help ▏^p palette",
        ),
    ],
    ids=IDS,
)
async def test_the_footer_shows_every_key_whole_and_the_help_key(
    size: tuple[int, int], expected: str
) -> None:
    async with open_app("alexnet", size=size) as (_app, pilot):
        assert footer(pilot) == expected


async def test_a_narrow_footer_leaves_out_whole_keys_and_keeps_help() -> None:
    async with open_app("alexnet", size=(60, 24)) as (_app, pilot):
        assert footer(pilot) == "q Quit : Go to / Filter f Freeze ? Help ▏^p palette"


@pytest.mark.parametrize("size", SIZES, ids=IDS)
async def test_the_detail_pane_wraps_at_separators(size: tuple[int, int]) -> None:
    async with open_app("alexnet", size=size) as (_app, pilot):
        root = await whole_pane(pilot)
        assert split_numbers(root) == [], root
        assert "torchvision.models.alexnet" in unwrapped(root)
        assert "61,100,840(61.1M)" in unwrapped(root)
        assert "…" not in root
        for child, count in (("features", "2.5M"), ("classifier", "58.6M")):
            assert re.search(rf"{child} +█* +{re.escape(count)}", root), root

        await goto(pilot, "classifier.6")
        pane = await whole_pane(pilot)
        assert split_numbers(pane) == [], pane
        assert "in_features=4096,out_features=1000,bias=True" in unwrapped(pane)
        assert "torch.nn.modules.linear" in unwrapped(pane)
        assert "…" not in pane  # no cell of the tensors' table shortened
        for cell in ("weight", "(1000, 4096)", "(1000,)", "float32", "requires_grad"):
            assert cell in pane, pane


async def save_to(pilot: Pilot[None], path: Path) -> str:
    await pilot.press("w")
    await wait_for_text(pilot, "write the weights")
    # The path is set, not typed: typing it is the write dialog's tests' job, and a key
    # at a time costs seconds for a long path. Here what matters is the status it ends in.
    pilot.app.screen.query_one(PathInput).value = str(path)
    await pilot.press("enter")
    await wait_for_text(pilot, "wrote")
    return widget_text(pilot.app, "#status")


@pytest.mark.parametrize("size", SIZES, ids=IDS)
async def test_a_save_status_is_shown_whole(
    size: tuple[int, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_file: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()
    async with open_app(f"{models_file}:SharedNet", size=size) as (app, pilot):
        status = await save_to(pilot, Path("x/sharednet-edited.safetensors"))
        message = app.query_one(StatusLine).history[-1].text
        assert message.endswith("· and sharednet-edited.safetensors.recipe.json"), message
        assert unwrapped(status) == unwrapped(message)
        assert split_numbers(status) == []


async def test_a_status_too_long_for_its_lines_points_to_the_log_which_has_it_whole(
    tmp_path: Path, models_file: Path
) -> None:
    folder = tmp_path / "a_folder_with_a_rather_long_name" / "and_another_one_below_it"
    folder.mkdir(parents=True)
    async with open_app(f"{models_file}:SharedNet", size=(80, 24)) as (app, pilot):
        status = await save_to(pilot, folder / "weights-of-the-shared-net.safetensors")
        message = app.query_one(StatusLine).history[-1].text
        assert len(message) > 2 * 78
        assert status.rstrip().endswith(POINTER.strip()), status
        assert "L shows it all" in POINTER
        await pilot.press("L")
        await wait_for_text(pilot, "Messages, the latest last")
        log = widget_text(app, "#log-body")  # scrolled to the messages: the latest is in view
        assert unwrapped(message) in unwrapped(log), log
        assert "escape closes" in screen_text(app)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
async def test_log_summary_and_help_say_how_to_close_without_scrolling(
    size: tuple[int, int],
) -> None:
    async with open_app(AppOptions("alexnet", input_shape="1,3,224,224"), size=size) as (
        app,
        pilot,
    ):
        for key, needle in (("L", "Edit log"), ("s", "Conv2d (0)"), ("question_mark", "Keys")):
            await pilot.press(key)
            await wait_for_text(pilot, needle, timeout=60)
            assert "escape closes" in screen_text(app)
            await pilot.press("end")  # at the bottom, as at the top
            await pilot.pause()
            assert "escape closes" in screen_text(app)
            await pilot.press("escape")
            await wait_for(pilot, lambda: "escape closes" not in screen_text(app))


async def test_the_summary_scrolls_sideways_to_every_column_at_80x24() -> None:
    async with open_app(AppOptions("alexnet", input_shape="1,3,224,224"), size=(80, 24)) as (
        app,
        pilot,
    ):
        await pilot.press("s")
        screen = await wait_for_text(pilot, "Conv2d (0)", timeout=60)
        assert "Mult-Adds" not in screen  # past the right edge
        for _ in range(60):
            if "70,470,400" in screen_text(app):
                break
            await pilot.press("right")
        screen = squeeze(screen_text(app))
        assert "Param # Mult-Adds" in screen
        assert "23,296 70,470,400" in screen  # features.0: whole numbers in both columns


async def test_the_trusted_pickle_warning_is_whole_at_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "ConvBatchNormReluBlockWithAVeryLongDescriptiveName"
    (tmp_path / "convbn_blocks.py").write_text(
        textwrap.dedent(f"""
        from torch import nn

        class {name}(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)
                self.bn = nn.BatchNorm2d(8)
                self.act = nn.ReLU()
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import convbn_blocks  # type: ignore[import-not-found]

    torch.save(getattr(convbn_blocks, name)(), tmp_path / "m.pth")
    options = AppOptions(str(tmp_path / "m.pth"), trust_pickle=True)
    async with open_app(options, size=(120, 40)) as (app, pilot):
        screen = await wait_for_text(pilot, "⚠ trusted pickle: loading this file ran code from it")
        pane = widget_text(app, "#detail")
        assert "…" not in pane
        warning = (
            f"⚠ trusted pickle: loading this file ran code from it; it imports convbn_blocks.{name}"
        )
        assert unwrapped(warning) in unwrapped(pane), pane
        assert "torch.nn.modules.conv.Conv2d" in unwrapped(pane)
        assert "…" not in screen.splitlines()[0] + screen.splitlines()[1]
