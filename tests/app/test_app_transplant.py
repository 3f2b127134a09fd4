"""Transplanting from the keyboard (Pilot): `T`, a checkpoint's path, the prefilled mapping
and its report, enter; bad sources and a mapping that copies nothing change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from textual.pilot import Pilot

from modelbrowse.tui.app import ModelBrowseApp
from tests.app_support import (
    open_app,
    paste,
    screen_text,
    settle,
    squeeze,
    wait_for,
    wait_for_notification,
    wait_for_text,
    widget_text,
)
from tests.edit_support import state
from tests.transplant_support import resnet18_state, write_det, write_resnet18

SIZE = (130, 40)


@pytest.fixture
def det(tmp_path: Path) -> str:
    return f"{write_det(tmp_path)}:build"


async def goto(pilot: Pilot[None], path: str) -> None:
    await pilot.press("colon", *path, "enter")
    await wait_for(pilot, lambda: f"│ {path} │" in squeeze(screen_text(pilot.app)))


async def open_transplant(pilot: Pilot[None], donor: str) -> None:
    """`T` on the backbone, the donor's path typed in, enter."""
    await goto(pilot, "backbone")
    await pilot.press("T")
    await wait_for_text(pilot, "transplant into backbone: copy weights from the checkpoint")
    await paste(pilot, donor)
    await pilot.press("enter")


def model_of(app: ModelBrowseApp) -> torch.nn.Module:
    assert app.session.history is not None
    return app.session.history.model


async def test_t_copies_a_resnet18_into_the_backbone(det: str, tmp_path: Path) -> None:
    donor = write_resnet18(tmp_path, ".safetensors")
    async with open_app(det, size=SIZE) as (app, pilot):
        await open_transplant(pilot, str(donor))
        screen = await wait_for_text(pilot, "copied: 100 tensors, 42.7 MiB")
        assert "transplant resnet18.safetensors (safetensors) into backbone" in screen
        assert "missing (no source): 16 backbone.fpn.inner_blocks.0.0.weight" in screen
        assert "unexpected (no destination): 22" in screen and "fc.weight" in screen
        assert "shape mismatches (not copied): 0" in screen
        assert app.screen.query_one("#target-prefix").value == "backbone.body."  # type: ignore[attr-defined]
        await pilot.press("enter")
        status = await wait_for_text(
            pilot, "transplant resnet18.safetensors into backbone ('' -> 'backbone.body.')"
        )
        assert "copied 100 tensors (42.7 MiB), 16 missing, 22 unexpected" in status
        expected = resnet18_state()["conv1.weight"]
        assert torch.equal(model_of(app).get_parameter("backbone.body.conv1.weight"), expected)

        await goto(pilot, "backbone.body.conv1.weight")
        pane = squeeze(widget_text(app, "#detail"))
        assert f"max {expected.max().item():.6g}" in pane
        assert f"min {expected.min().item():.6g}" in pane

        await pilot.press("u")
        await wait_for_text(pilot, "undid: transplant resnet18.safetensors")
        assert not torch.equal(model_of(app).get_parameter("backbone.body.conv1.weight"), expected)

        await pilot.press("question_mark")
        await wait_for_text(pilot, "T transplant: copy weights from another checkpoint")


@pytest.mark.parametrize("kind", ["missing", "directory", "not a checkpoint"])
async def test_a_bad_source_is_one_line_and_changes_nothing(
    det: str, tmp_path: Path, kind: str
) -> None:
    paths = {
        "missing": (tmp_path / "nope.pt", "no such file or directory:"),
        "directory": (tmp_path / "empty", "is a directory without a model"),
        "not a checkpoint": (tmp_path / "notes.pt", "notes.pt is a text file"),
    }
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.pt").write_text("not weights\n" * 20)
    path, needle = paths[kind]
    async with open_app(det, size=SIZE) as (app, pilot):
        before = state(model_of(app))
        await open_transplant(pilot, str(path))
        await wait_for(pilot, lambda: needle in squeeze(screen_text(app)))
        if kind == "missing":  # the path dialog says it and stays open
            await pilot.press("escape")
        await settle(pilot)
        assert app.session.unsaved == 0
        after = model_of(app).state_dict()
        assert all(torch.equal(after[k], v) for k, v in before.items())
        assert "Traceback" not in screen_text(app)


async def test_a_mapping_that_copies_nothing_cannot_be_confirmed(det: str, tmp_path: Path) -> None:
    donor = write_resnet18(tmp_path, ".pt")
    async with open_app(det, size=SIZE) as (app, pilot):
        before = state(model_of(app))
        await goto(pilot, "backbone.fpn.layer_blocks.0.0.bias")
        await pilot.press("T")
        await wait_for_notification(pilot, "transplant into a module: move the cursor to one")
        await open_transplant(pilot, str(donor))
        await wait_for_text(pilot, "copied: 100 tensors")
        await paste(pilot, "nothing.")  # the source prefix field has the focus
        screen = await wait_for_text(pilot, "copies nothing: change a prefix")
        assert "copied: 0 tensors" in screen
        await pilot.press("enter")
        await settle(pilot)
        assert "copies nothing" in squeeze(screen_text(app))  # still open
        await pilot.press("escape")
        await wait_for_text(pilot, "nothing changed")
        assert app.session.unsaved == 0
        after = model_of(app).state_dict()
        assert all(torch.equal(after[k], v) for k, v in before.items())
