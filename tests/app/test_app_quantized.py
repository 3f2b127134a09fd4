"""A quantized layer in the app: one logical weight with its true shape and count, in the tree
drawn before torch and after the full open, with the statistics of its dequantized values."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions
from tests.app_support import wait_for, wait_for_text, wait_loaded

SIZE = (150, 45)
Q_PROJ = "model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def gptq_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPTQ 4-bit, group 128 `q_proj` of 4096x4096: 8 MiB of packed words."""
    folder = tmp_path_factory.mktemp("gptq")
    generator = torch.Generator().manual_seed(0)
    words = torch.randint(-(2**31), 2**31 - 1, (512 + 32, 4096), generator=generator)
    tensors = {
        f"{Q_PROJ}.qweight": words[:512].int(),
        f"{Q_PROJ}.qzeros": words[512:, :512].int(),
        f"{Q_PROJ}.scales": (torch.rand(32, 4096, generator=generator) / 100).half(),
        f"{Q_PROJ}.g_idx": (torch.arange(4096) // 128).int(),
        "model.norm.weight": torch.ones(4096),
    }
    save_file(tensors, folder / "model.safetensors")
    config = {"model_type": "llama", "quantization_config": {"quant_method": "gptq", "bits": 4,
              "group_size": 128, "checkpoint_format": "gptq"}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    return folder


async def test_a_gptq_q_proj_shows_its_logical_shape_and_true_count(
    gptq_folder: Path, full_open_held: threading.Event
) -> None:
    release = full_open_held
    app = ModelBrowseApp(AppOptions(str(gptq_folder)))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.session.previewing)  # the tree before torch
        shown = await wait_for_text(pilot, "16.8M params")  # the header's total
        assert "131.1K" not in shown
        await pilot.press(":", *f"{Q_PROJ}.weight", "enter")
        shown = await wait_for_text(pilot, "parameters 16,777,216 (16.8M)")
        assert "◇ weight (4096, 4096) 16.8M GPTQ 4-bit" in shown  # the tree's line
        for line in (
            "kind quantized weight",
            "shape (4096, 4096)",
            "scheme GPTQ 4-bit",
            "bits 4 per weight, 4.16 as stored",
            "grouping groups of 128 inputs",
            "size 8.3 MiB stored",
            "qweight int32 (512, 4096)",
            "qzeros int32 (32, 512)",
            "scales float16 (32, 4096)",
            "g_idx int32 (4096,)",
            "statistics reading values…",
        ):
            assert line in shown, line
        release.set()
        await wait_loaded(pilot, 240)
        shown = await wait_for_text(pilot, "statistics exact")
        assert "parameters 16,777,216 (16.8M)" in shown and "(4096, 4096)" in shown
        assert "16.8M params" in shown
        found = re.search(r" mean (\S+) ", shown)
        assert found is not None
        mean = float(found.group(1))
        assert mean != 0.0 and abs(mean) < 1.0  # dequantized values, not packed words
