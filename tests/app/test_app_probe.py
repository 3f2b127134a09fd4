"""The probe in the app (Pilot): `p` runs the model, the tree shows output shapes and marks
NaN, `!` goes to where NaN starts and to parameters with no gradient, edits make it stale,
escape cancels it."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions
from modelbrowse.tui.screens.probe_dialog import ProbeDialog
from modelbrowse.widgets.module_tree import ModuleTree
from tests.app_support import (
    open_app,
    settle,
    squeeze,
    unwrapped,
    wait_for,
    wait_for_notification,
    wait_for_text,
    widget_text,
)

SIZE = (120, 40)


def status(app: ModelBrowseApp) -> str:
    return squeeze(widget_text(app, "#status"))


def tree_lines(app: ModelBrowseApp) -> list[str]:
    return [line.strip() for line in squeeze(widget_text(app, "#tree")).splitlines()]


async def probe(pilot: Pilot[None], *keys: str) -> None:
    """`p`, the dialog's `keys`, enter; then wait until the run has ended."""
    app = pilot.app
    assert isinstance(app, ModelBrowseApp)
    await pilot.press("p")
    await wait_for(pilot, lambda: isinstance(app.screen, ProbeDialog))
    await pilot.press(*keys, "enter")
    await wait_for(pilot, lambda: app.session.probe.shown is not None)
    await settle(pilot)


async def test_p_on_alexnet_shows_each_modules_output_shape() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("p")
        dialog = await wait_for_text(pilot, "probe: run the model once")
        assert "input: random 1,3,224,224 (the model's default input)" in dialog
        assert "[ ] train mode (t)" in dialog and "[ ] backward pass (b)" in dialog
        await pilot.press("enter")
        await wait_for_text(pilot, "no NaN/Inf")
        assert "probe: 24 modules in" in status(app)
        await pilot.press("down", "l")  # open features
        await pilot.pause()
        tree = tree_lines(app)
        assert tree[:4] == [
            "▼ AlexNet 61.1M →1×1000",
            "├─ ▼ features Sequential 2.5M →1×256×6×6",
            "│ ├─ ▶ 0 Conv2d 23.3K →1×64×55×55",
            "│ ├─ 1 ReLU 0 →1×64×55×55",
        ]
        assert "NaN" not in "\n".join(tree)
        await pilot.press("down", "down")  # features.1, a ReLU
        pane = await wait_for_text(pilot, "dead units")
        assert "probe eval mode" in pane
        for label in ("output 1×64×55×55 float32", "mean", "std", "absmax", "zeros", "histogram"):
            assert label in pane


async def test_bang_goes_to_the_third_layer_where_nan_starts(models_file: Path) -> None:
    options = AppOptions(f"{models_file}:NanInThird", input_shape="2,4")
    async with open_app(options, size=SIZE) as (app, pilot):
        await probe(pilot)
        assert "NaN first from fc2 (! goes there)" in status(app)
        assert tree_lines(app)[:6] == [
            "▼ NanInThird 130 →2×2 NaN",
            "├─ ▶ fc1 Linear 40 →2×8",
            "├─ act1 ReLU 0 →2×8",
            "├─ ▶ fc2 Linear 72 →2×8 NaN",
            "├─ act2 ReLU 0 →2×8 NaN",
            "└─ ▶ head Linear 18 →2×2 NaN",
        ]
        await pilot.press("exclamation_mark")
        await wait_for(pilot, lambda: app.query_one(ModuleTree).cursor_path == "fc2")
        line = unwrapped(status(app))
        assert unwrapped("1/3 NaN first from fc2 · input 2×8 mean") in line
        assert unwrapped("NaN 0 Inf 0") in line  # the NaN is made here, not passed on
        await pilot.press("exclamation_mark")
        await wait_for(pilot, lambda: app.query_one(ModuleTree).cursor_path == "act2")
        assert "2/3 NaN then from act2" in status(app)


async def test_backward_on_an_unused_branch_says_no_gradient(models_file: Path) -> None:
    options = AppOptions(f"{models_file}:UnusedBranch", input_shape="2,4")
    async with open_app(options, size=SIZE) as (app, pilot):
        await probe(pilot, "b")
        line = unwrapped(status(app))
        named = "4 trainable parameters got no gradient: aux.0.weight, aux.0.bias, aux.2.weight,"
        assert unwrapped(f"{named} and 1 more (!)") in line
        await pilot.press("exclamation_mark")
        await wait_for(pilot, lambda: app.query_one(ModuleTree).cursor_path == "aux.0.weight")
        assert "1/4 no gradient: aux.0.weight (in aux.0)" in status(app)
        await wait_for_text(pilot, "no gradient: the loss")
        assert "◆ weight (3, 4) 12 no grad" in squeeze(widget_text(app, "#tree"))
        for key in ("g", "down", "l", "down"):  # to trunk.weight
            await pilot.press(key)
            await settle(pilot)
        pane = await wait_for_text(pilot, "grad/weight")
        assert "grad norm" in pane and "no gradient" not in squeeze(widget_text(app, "#detail"))


async def test_an_edit_marks_the_probe_stale_and_p_runs_it_again(models_file: Path) -> None:
    options = AppOptions(f"{models_file}:UnusedBranch", input_shape="2,4")
    async with open_app(options, size=SIZE) as (app, pilot):
        await probe(pilot)
        assert "stale" not in squeeze(widget_text(app, "#detail"))
        await pilot.press("f")  # freeze the root
        await wait_for_text(pilot, "stale: the model changed since this run")
        assert app.session.probe.stale
        await pilot.press("u")
        await settle(pilot)
        assert app.session.probe.stale  # undo changes the model too
        await probe(pilot)
        assert not app.session.probe.stale
        assert "stale" not in squeeze(widget_text(app, "#detail"))


async def test_escape_cancels_a_running_probe(models_file: Path) -> None:
    options = AppOptions(f"{models_file}:SlowNet", input_shape="1,8")
    async with open_app(options, size=SIZE) as (app, pilot):
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProbeDialog))
        await pilot.press("enter")
        await wait_for_text(pilot, "probing… 3/52 modules · escape cancels")
        await pilot.press("f")  # edits wait while the hooks are on the model
        await pilot.press("escape")
        await wait_for_text(pilot, "probe cancelled")
        await settle(pilot)
        assert app.session.probe.shown is None and not app.session.probe.running
        assert app.session.history is not None and not app.session.history.done
        assert "→" not in widget_text(app, "#tree")


async def test_p_is_refused_with_one_line_under_meta() -> None:
    async with open_app(AppOptions("alexnet", meta=True), size=SIZE, loaded=False) as (
        app,
        pilot,
    ):
        await wait_for(pilot, lambda: app.session.index is not None and not app.session.previewing)
        await pilot.press("p")
        await wait_for_notification(pilot, "--meta: the model has no values to run")
        assert not isinstance(app.screen, ProbeDialog)


async def test_after_a_probe_every_tree_line_fits_at_80x24() -> None:
    async with open_app("alexnet", size=(80, 24)) as (app, pilot):
        await probe(pilot)
        await pilot.press("down", "l")
        await settle(pilot)
        lines = tree_lines(app)
        assert "├─ ▼ features Sequential 2.5M →1×256×6×6" in lines
        assert "├─ avgpool AdaptiveAvgPool2d 0 →1×256×6×6" in lines
        assert "└─ ▶ classifier Sequential 58.6M →1×1000" in lines
        assert app.query_one(ModuleTree).max_scroll_x == 0  # nothing hidden to the right


async def test_the_input_file_is_what_the_probe_feeds(models_file: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    batch = tmp_path / "batch.safetensors"
    save_file({"x": torch.ones(3, 4)}, str(batch))
    options = AppOptions(f"{models_file}:UnusedBranch", input_file=str(batch))
    async with open_app(options, size=SIZE) as (app, pilot):
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ProbeDialog))
        shown = unwrapped(widget_text(app, "#probe-input"))
        assert shown == unwrapped(f"input: {batch} (--input)")
        await pilot.press("enter")
        await wait_for_text(pilot, "no NaN/Inf")
        assert tree_lines(app)[0] == "▼ UnusedBranch 69 partly frozen →3×2"
