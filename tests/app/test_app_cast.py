"""Casting from the keyboard (Pilot): `c`, the dialog's dtype and keep list, the header's size
and the detail pane after it and after undo; the write dialog's dtype line."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from textual.pilot import Pilot

from modelbrowse.core.recipe import read_recipe
from modelbrowse.core.saving.weights import read_weights
from modelbrowse.core.units import human_bytes
from modelbrowse.widgets.model_header import ModelHeader
from tests.app_support import (
    open_app,
    paste,
    screen_text,
    squeeze,
    wait_for,
    wait_for_text,
    widget_text,
)

SIZE = (150, 44)


async def goto(pilot: Pilot[None], path: str) -> str:
    await pilot.press("colon", *path, "enter")
    await wait_for(pilot, lambda: f"│ {path} │" in squeeze(screen_text(pilot.app)))
    return squeeze(widget_text(pilot.app, "#detail"))


def header_size(pilot: Pilot[None]) -> str:
    return squeeze(widget_text(pilot.app, "ModelHeader"))


async def test_c_casts_to_bf16_keeping_biases_and_undo_restores() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        index = app.session.index
        assert index is not None
        before = index.totals("").nbytes
        assert human_bytes(before) in header_size(pilot)
        assert re.search(r"dtype │? ?float32", await goto(pilot, "features.0.weight"))
        await pilot.press("home", "c")
        screen = await wait_for_text(pilot, "cast the whole model")
        assert "● bf16 (bfloat16)" in screen
        assert "features.0.bias, features.3.bias" in screen  # the keep list, editable
        assert "8 tensors to bfloat16 · 8 kept in float32" in screen
        await pilot.press("down")  # fp16, then back
        await wait_for_text(pilot, "● fp16 (float16)")
        await pilot.press("up", "enter")
        await wait_for_text(pilot, "cast the whole model to bfloat16, keeping features.0.bias")

        after = index.totals("").nbytes
        assert 0.49 * before < after < 0.51 * before  # the biases are a sliver
        await wait_for(pilot, lambda: human_bytes(after) in header_size(pilot))
        assert app.query_one(ModelHeader) is not None
        assert "bfloat16" in await goto(pilot, "features.0.weight")
        assert "float32" in await goto(pilot, "features.0.bias")
        assert app.session.unsaved == 1

        await pilot.press("u")
        await wait_for(pilot, lambda: human_bytes(before) in header_size(pilot))
        await goto(pilot, "classifier.6.weight")
        detail = await goto(pilot, "features.0.weight")
        assert "bfloat16" not in detail and "float32" in detail
        assert app.session.history is not None
        model = app.session.history.model
        assert {t.dtype for t in model.state_dict().values()} == {torch.float32}


async def test_a_keep_entry_that_names_nothing_is_refused() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await goto(pilot, "classifier")
        await pilot.press("c")
        await wait_for_text(pilot, "cast classifier")
        await pilot.press("end", "ctrl+u")  # Input's own: clear to the start of the line
        await paste(pilot, "classifier.6, nothing.here")
        screen = await wait_for_text(pilot, "'nothing.here' names no floating tensor")
        assert "4 tensors to bfloat16 · 2 kept in float32" in screen
        await pilot.press("enter")  # refused: the dialog stays
        await pilot.press("escape")
        await wait_for_text(pilot, "nothing changed")
        assert app.session.unsaved == 0


async def test_the_write_dialog_writes_in_the_dtype_chosen(tmp_path: Path) -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        out = tmp_path / "alexnet-bf16.safetensors"
        await pilot.press("w")
        screen = await wait_for_text(pilot, "write the weights")
        assert "dtype: ● as is ○ bf16 ○ fp16 ○ fp32" in screen
        await pilot.press("down")
        await wait_for_text(pilot, "○ as is ● bf16")
        await pilot.press("ctrl+u")
        await paste(pilot, str(out))
        await pilot.press("enter")
        await wait_for_text(pilot, f"wrote {out}")
        state = read_weights(out)
        assert {t.dtype for t in state.values()} == {torch.bfloat16}
        edits = read_recipe(str(out) + ".recipe.json")["edits"]
        assert edits == [{"op": "cast", "path": "", "dtype": "bfloat16"}]
        assert app.session.history is not None  # the model in the app is as it was
        assert app.session.history.model.get_parameter("features.0.weight").dtype == torch.float32
