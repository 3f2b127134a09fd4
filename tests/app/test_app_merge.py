"""`M` on an adapter open over its base: the merge written where the dialog says, with
progress in the status line; refused where there is no adapter on a base of files."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from modelbrowse.core.saving.weights import read_weights
from modelbrowse.tui.options import AppOptions
from tests.adapter_support import Base, lora_config
from tests.app_support import open_app, paste, settle, wait_for_notification, wait_for_text
from tests.merge_support import peft_merged

SIZE = (130, 40)


async def test_m_merges_the_open_adapter_into_its_base_files(tmp_path: Path) -> None:
    torch.manual_seed(3)
    base = Base()
    save_file(dict(base.state_dict()), tmp_path / "base.safetensors")
    config = lora_config(target_modules=["fc1", "fc2"], modules_to_save=None)
    expected = peft_merged(tmp_path / "lora", base, config)
    options = AppOptions(str(tmp_path / "lora"), arch=str(tmp_path / "base.safetensors"))
    out = tmp_path / "merged.safetensors"
    async with open_app(options, size=SIZE) as (_, pilot):
        await pilot.press("M")
        await wait_for_text(pilot, "merge the adapter into its base")
        await paste(pilot, str(out))  # the proposed path starts selected: this replaces it
        await pilot.press("enter")
        screen = await wait_for_text(pilot, f"merged into {out}")
        assert "2 weights updated" in screen
    found = read_weights(out)
    assert sorted(found) == sorted(expected)
    assert all(torch.equal(found[k], v) for k, v in expected.items())


async def test_m_without_an_adapter_says_how_to_open_one(tmp_path: Path) -> None:
    save_file(dict(Base().state_dict()), tmp_path / "base.safetensors")
    async with open_app(str(tmp_path / "base.safetensors"), size=SIZE) as (_, pilot):
        await pilot.press("M")
        message = await wait_for_notification(pilot, "nothing merged")
        assert "open ADAPTER_FOLDER --arch BASE" in message
        await settle(pilot)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.safetensors"]
