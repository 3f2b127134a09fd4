"""`A` adds LoRA adapters to the selection or the cursor's subtree; `w` then writes a PEFT
adapter folder that peft loads."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torchvision.models import alexnet

from tests.app_support import (
    open_app,
    paste,
    screen_text,
    squeeze,
    unwrapped,
    wait_for,
    wait_for_text,
)

pytest.importorskip("peft")

SIZE = (130, 40)


async def test_lora_on_a_selection_then_written_as_an_adapter_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel

    monkeypatch.chdir(tmp_path)
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("colon", *"classifier", "enter", "A")  # the subtree: what LoRA skips
        screen = await wait_for_text(pilot, "add LoRA adapters: classifier")
        assert "3 get adapters: classifier.1, classifier.4, classifier.6" in screen
        assert "4 cannot take LoRA: classifier.0 (Dropout), classifier.2 (ReLU)" in screen
        await pilot.press("escape")

        await pilot.press("asterisk", *"cls:Linear", "enter", "A")
        screen = await wait_for_text(pilot, "add LoRA adapters: cls:Linear")
        assert "target_modules" in screen
        assert "3 get adapters: classifier.1, classifier.4, classifier.6" in screen
        await pilot.press("enter")
        screen = await wait_for_text(pilot, "add LoRA (r=8, alpha=16) to 3 modules matching")
        model = app.session.history.model if app.session.history else None
        assert model is not None
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        assert trainable == 8 * (9216 + 4096) + 8 * (4096 + 4096) + 8 * (4096 + 1000)
        assert f"{100 * trainable / total:.2f}% trainable" in screen
        assert "1 unsaved edit" in screen

        await pilot.press("w")
        await wait_for_text(pilot, "write the LoRA adapter folder")
        await pilot.press("ctrl+a", "ctrl+k")
        await paste(pilot, str(tmp_path / "adapter"))
        await pilot.press("enter")
        screen = unwrapped(await wait_for_text(pilot, "adapter_model.safetensors.recipe.json"))
        assert unwrapped(f"wrote {tmp_path / 'adapter'} (6 tensors, 212.8K params") in screen
        assert "·andadapter/adapter_model.safetensors.recipe.json" in screen
        assert "unsaved edit" not in squeeze(screen_text(app))
        lora = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}

    folder = tmp_path / "adapter"
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "adapter_model.safetensors.recipe.json",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = PeftModel.from_pretrained(alexnet(), str(folder))
    for name, value in lora.items():
        assert torch.equal(loaded.get_parameter(f"base_model.model.{name}"), value), name


async def test_lora_undo_restores_the_header_and_the_modules() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("colon", *"classifier.6", "enter", "A")
        await wait_for_text(pilot, "1 get adapters: classifier.6")
        await pilot.press("ctrl+a", "ctrl+k", *"features.1", "enter")  # a ReLU: refused
        await wait_for_text(pilot, "1 cannot take LoRA: features.1 (ReLU)")
        assert app.session.history is not None and not app.session.history.done
        await pilot.press("ctrl+a", "ctrl+k", *"classifier.6", "enter")
        screen = await wait_for_text(pilot, "% trainable")
        assert "(40.8K trainable, 61.1M frozen) 0.07% trainable" in screen
        await pilot.press("L")  # the PEFT code that does the same
        await wait_for_text(pilot, "model = get_peft_model(model, config)")
        screen = await wait_for_text(pilot, "target_modules=['classifier.6']")
        assert "LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05," in screen
        await pilot.press("escape", "u")
        screen = await wait_for_text(pilot, "undid: add LoRA")
        await wait_for(pilot, lambda: "% trainable" not in squeeze(screen_text(app)))
        assert "61.1M params (61.1M trainable, 0 frozen)" in squeeze(screen_text(app))
        model = app.session.history.model
        assert type(model.get_submodule("classifier.6")) is torch.nn.Linear


async def test_at_80x24_the_long_lists_scroll_and_the_error_and_hint_stay_on_screen() -> None:
    from tests.lora_support import TINY_LLAMA

    async with open_app(TINY_LLAMA, size=(80, 24)) as (_app, pilot):
        await pilot.press("A")
        screen = await wait_for_text(pilot, "add LoRA adapters: the whole model")
        assert "16 get adapters" in screen  # eight lines of names on this width
        await pilot.press("ctrl+a", "ctrl+k", "enter")  # no targets
        screen = await wait_for_text(pilot, "no target modules")
        assert "enter applies · tab next field · escape cancels" in screen
