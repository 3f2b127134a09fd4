"""LoRA on q_proj and v_proj of a tiny Llama in a real terminal (tmux), then written."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from tests.e2e.test_tmux import Terminal, start, terminal, wait_for_file
from tests.lora_support import tiny_llama, write_builder

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
__all__ = ["terminal"]  # the fixture, shared with test_tmux.py


def test_lora_on_q_and_v_of_a_tiny_llama(terminal: Terminal, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from peft import PeftModel

    status = start(terminal, tmp_path, write_builder(tmp_path))
    terminal.wait_for("(22.7K trainable, 0 frozen)")
    terminal.keys("*", "*[qv]_proj", "Enter")
    terminal.wait_for("*[qv]_proj: 4 modules")
    terminal.keys("A")
    screen = terminal.wait_for("add LoRA adapters: *[qv]_proj")
    assert (
        "4 get adapters: model.layers.0.self_attn.q_proj, model.layers.0.self_attn.v_proj" in screen
    )
    assert "q_proj, v_proj" in screen  # the target_modules field, prefilled
    terminal.keys("Enter")
    screen = terminal.wait_for("% trainable")
    assert "(1.8K trainable, 22.7K frozen) 7.32% trainable" in screen
    terminal.keys("w")
    terminal.wait_for("write the LoRA adapter folder")
    terminal.keys("Enter")
    terminal.wait_for("adapter_model.safetensors.recipe.json")
    terminal.keys("q")
    assert wait_for_file(status) == "0"

    (folder,) = tmp_path.glob("*-lora")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PeftModel.from_pretrained(tiny_llama(), str(folder))
    assert len([n for n, _ in model.named_parameters() if "lora_" in n]) == 8
