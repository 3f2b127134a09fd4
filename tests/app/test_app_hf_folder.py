"""`w` on a model from a Hugging Face folder: the dialog offers a folder, and what it writes
loads with `from_pretrained`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modelbrowse.tui.options import AppOptions
from modelbrowse.tui.screens.path_dialog import PathInput
from modelbrowse.widgets.status_line import StatusLine
from tests.app_support import open_app, wait_for_text

transformers = pytest.importorskip("transformers")

SIZE = (130, 40)


async def test_w_writes_a_hugging_face_folder(
    tiny_llama_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = AppOptions(str(tiny_llama_folder), max_shard_size=30_000)
    async with open_app(options, size=SIZE) as (app, pilot):
        await pilot.press("w")
        screen = await wait_for_text(pilot, "write the weights: a Hugging Face folder")
        assert str(tiny_llama_folder.with_name("tiny-llama-edited")) in screen
        assert "a folder, or a path ending in" not in screen  # the proposed name is there
        dialog = app.screen.query_one(PathInput)
        dialog.value = "missing/out"
        await pilot.press("enter")
        await wait_for_text(pilot, "the directory missing does not exist")
        (tmp_path / "notes").write_text("mine")
        dialog.value = "notes"
        await pilot.press("enter")
        await wait_for_text(pilot, "notes is a file: name a folder, or a file ending in")
        dialog.value = "out"
        await pilot.press("enter")
        await wait_for_text(pilot, "wrote")
        message = app.query_one(StatusLine).history[-1].text
        assert message.startswith("wrote out (4 shards, 20 tensors, 88.6 KiB")
        assert message.endswith("· and modelbrowse.recipe.json in it")
        assert app.session.history is not None
        shown = app.session.history.model.state_dict()
    out = tmp_path / "out"
    assert len(list(out.glob("model-0000?-of-00004.safetensors"))) == 4
    assert json.loads((out / "modelbrowse.recipe.json").read_text())["edits"] == []
    loaded, info = transformers.AutoModelForCausalLM.from_pretrained(
        str(out), output_loading_info=True
    )
    assert info["missing_keys"] == info["unexpected_keys"] == set()
    state = loaded.state_dict()
    assert state.keys() == shown.keys()
    assert all(torch.equal(state[key], tensor) for key, tensor in shown.items())
