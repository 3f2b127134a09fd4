"""The app on a GGUF file: its tree before torch, the metadata at the root, a Q4_K weight's
detail with the statistics of its dequantized values, and edits refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.app_support import (
    open_app,
    screen_text,
    squeeze,
    wait_for,
    wait_for_notification,
    wait_for_text,
)
from tests.e2e.test_app_first_screen import SCRIPT, run_preview
from tests.gguf_support import reference_values, write_gguf

SIZE = (150, 50)


@pytest.fixture
def llama(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf")


def test_the_tree_shows_before_torch_is_imported(llama: Path) -> None:
    script = SCRIPT.replace('"encoder Group"', '"blk Group"')
    out = run_preview(llama, script)
    assert "torch loaded: False" in out and "previewing: True" in out
    screen = next(line for line in out.splitlines() if line.startswith("SCREEN"))
    assert "478.0K params" in screen  # logical parameters, not packed bytes
    assert "token_embd Group" in screen and "output Group" in screen
    assert "after: True False" in out


async def goto(pilot: object, path: str) -> None:
    await pilot.press(":", *path, "enter")  # type: ignore[attr-defined]


async def test_the_root_shows_the_models_metadata(llama: Path) -> None:
    async with open_app(str(llama), size=SIZE) as (_app, pilot):
        screen = await wait_for_text(pilot, "format GGUF v3")
        for expected in (
            "architecture llama",
            "context length 2048",
            "layers 2",
            "tokenizer llama, vocabulary of 1,000 tokens",
            "weights Q4_K 4 tensors, 163.8K params, 90.0 KiB",
            "478.0K params",
        ):
            assert expected in screen, expected
        assert "<tok999>" not in screen


async def test_a_q4_k_weight_shows_its_scheme_and_dequantized_statistics(llama: Path) -> None:
    values = reference_values(llama, "blk.0.attn_q.weight").astype(np.float64)
    async with open_app(str(llama), size=SIZE) as (app, pilot):
        await goto(pilot, "blk[0].attn_q.weight")
        screen = await wait_for_text(pilot, "statistics exact")
        assert "weight (256, 256) 65.5K Q4_K" in screen  # the tree's line
        for expected in (
            "dtype Q4_K (float32 when dequantized)",
            "quantized 4.5 bits per weight, blocks of 256",
            "numel 65,536",
            "size 36.0 KiB",
            f"mean {values.mean():.6g}",
            f"min {values.min():.6g}",
            f"max {values.max():.6g}",
        ):
            assert expected in screen, expected
        await goto(pilot, "blk.1.ffn_up.weight")  # 131,072 values: sampled, then exact
        up = reference_values(llama, "blk.1.ffn_up.weight").astype(np.float64)
        await wait_for(
            pilot, lambda: f"mean {up.mean():.6g}" in squeeze(screen_text(app)), timeout=30
        )
        assert "dtype Q8_0 (float32 when dequantized)" in squeeze(screen_text(app))


async def test_edits_are_refused_in_one_line(llama: Path) -> None:
    async with open_app(str(llama), size=SIZE) as (app, pilot):
        await goto(pilot, "blk.0.attn_q")
        await wait_for_text(pilot, "path blk.0.attn_q")
        await pilot.press("f")
        message = await wait_for_notification(pilot, "read-only")
        assert "a GGUF file is read-only here: its weights are quantized" in message
        assert app.session.history is not None and not app.session.history.done


async def test_diff_against_the_safetensors_it_came_from(tmp_path: Path) -> None:
    from modelbrowse.tui.options import AppOptions
    from tests.e2e.test_cli_gguf import converted_llama

    gguf_file, safetensors = converted_llama(tmp_path)
    options = AppOptions(str(gguf_file), diff=str(safetensors))
    async with open_app(options, size=SIZE) as (_app, pilot):
        await goto(pilot, "blk.1.attn_k.weight")
        screen = await wait_for_text(pilot, "statistics exact")
        assert "A vs B dtype changed: Q8_0 -> float32, max abs diff" in screen
        assert "≠ ◆ weight (32, 64) 2.0K Q8_0" in screen
