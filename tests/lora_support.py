"""A tiny Llama for the LoRA tests, built from a `LlamaConfig` (also a source: `TINY_LLAMA`)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

HERE = Path(__file__).resolve()
TINY_LLAMA = f"{HERE}:tiny_llama"

BUILDER = """from transformers import LlamaConfig, LlamaForCausalLM


def build():
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=64,
    )
    model: nn.Module = LlamaForCausalLM(config)
    return model
"""


def tiny_llama() -> nn.Module:
    """hidden 32, 2 layers, vocabulary 64: q/k/v/o, gate/up/down, two norms a layer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=64,
    )
    model: nn.Module = LlamaForCausalLM(config)
    return model


def write_builder(folder: Path) -> str:
    """The tiny Llama as a file of its own; its source spec (`path.py:build`)."""
    path = folder / "tiny_llama.py"
    path.write_text(BUILDER, encoding="utf-8")
    return f"{path}:build"
