"""The app on the files fine-tuners hold: an ONNX model (read-only) and a PEFT adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelbrowse.core.sources.adapters import AdapterSource
from modelbrowse.tui.options import AppOptions
from tests.adapter_support import BASE_SPEC, Base, lora_config, save_adapter
from tests.app.test_app_checkpoints import goto
from tests.app_support import (
    notifications,
    open_app,
    screen_text,
    squeeze,
    wait_for_notification,
    wait_for_text,
)
from tests.onnx_support import export_tiny

SIZE = (130, 40)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_tiny(path, external=True)
    return path


async def test_an_onnx_model_shows_its_graph_tree_and_values_but_is_not_edited(
    onnx_file: Path,
) -> None:
    async with open_app(str(onnx_file), size=SIZE) as (app, pilot):
        screen = await wait_for_text(pilot, "format ONNX (read-only)")
        assert "input x float32 (batch, 4)" in screen
        assert "op Gemm 2" in screen
        assert "external data weights.data" in screen
        assert "block Group 40" in screen
        await goto(pilot, "head.weight")
        screen = await wait_for_text(pilot, "statistics exact")
        assert "shape (3, 8)" in screen
        await pilot.press("f")
        message = await wait_for_notification(pilot, "shown read-only")
        assert "nothing changed" in message
        await pilot.press("w")
        message = await wait_for_notification(pilot, "nothing written")
        assert "an ONNX model is shown read-only" in message
        assert app.session.history is not None and not app.session.history.unsaved
        assert "Overwrite" not in squeeze(screen_text(app))
        assert "read-only" in notifications(app)


@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("adapter") / "lora"
    torch.manual_seed(0)
    save_adapter(folder, Base(), lora_config())
    return folder


async def test_an_adapter_alone_marks_its_modules_and_shows_each_update(
    adapter_folder: Path,
) -> None:
    async with open_app(str(adapter_folder), size=SIZE) as (app, pilot):
        screen = await wait_for_text(pilot, "method LoRA")
        assert "scaling 2 (lora_alpha / r)" in screen
        assert "Δ fc1 Group 96" in screen
        assert "≡ head Group 10" in screen
        assert "matched nothing in the adapter: 'nothere'" in screen  # the header's warning
        await goto(pilot, "fc1")
        screen = await wait_for_text(pilot, "LoRA rank 4, scaling 2 (alpha 8 / 4)")
        assert "A (4, 8), B (16, 4)" in screen
        source = app.session.source
        assert isinstance(source, AdapterSource)
        assert f"‖B·A‖·scaling {source.update_norm('fc1'):.6g}" in screen
        await pilot.press("d")
        await wait_for_notification(pilot, "a PEFT adapter is shown read-only")


async def test_an_adapter_on_its_base_marks_the_base_tree(adapter_folder: Path) -> None:
    options = AppOptions(str(adapter_folder), arch=BASE_SPEC)
    async with open_app(options, size=SIZE) as (app, pilot):
        screen = await wait_for_text(pilot, "Δ fc1 Linear 144")
        assert "≡ head Linear 10" in screen
        assert "adapter parameters 382 (92.27% of the base's 414)" in screen
        assert "⚠ target_modules names that matched nothing in the base: 'nothere'" in screen
        await goto(pilot, "conv")
        screen = await wait_for_text(pilot, "LoRA rank 4")
        assert "A (4, 3, 3, 3), B (4, 4, 1, 1)" in screen
        await pilot.press("f")
        await wait_for_notification(pilot, "a PEFT adapter is shown read-only")
        assert (
            app.session.index is not None
            and app.session.index.node("conv.weight").obj.requires_grad
        )
