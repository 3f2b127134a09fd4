"""The app on the files fine-tuners hold: an ONNX model (read-only) and a PEFT adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

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
        assert app.history is not None and not app.history.unsaved
        assert "Overwrite" not in squeeze(screen_text(app))
        assert "read-only" in notifications(app)
