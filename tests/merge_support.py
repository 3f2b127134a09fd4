"""Bases and adapters for the merge tests, and PEFT's own merge to compare with."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tests.adapter_support import save_adapter


def llama(
    folder: Path,
    *,
    tied: bool = False,
    dtype: torch.dtype = torch.float32,
    max_shard_size: str = "5GB",
) -> nn.Module:
    """A two-layer Llama saved with `save_pretrained` in `dtype` (in shards of at most
    `max_shard_size`)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        tie_word_embeddings=tied,
    )
    torch.manual_seed(0)
    llama = LlamaForCausalLM(config).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        llama.save_pretrained(str(folder), max_shard_size=max_shard_size)
    model: nn.Module = llama
    return model


def lora(**fields: Any) -> Any:
    from peft import LoraConfig

    settings: dict[str, Any] = {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj"],
        "init_lora_weights": False,  # B is not zero: the merge changes the weights
    }
    settings.update(fields)
    return LoraConfig(**settings)


def peft_merged(folder: Path, base: nn.Module, config: Any) -> dict[str, torch.Tensor]:
    """Save the adapter of `get_peft_model(base, config)` in `folder`; PEFT's merged state."""
    _, model = save_adapter(folder, copy.deepcopy(base), config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = model.merge_and_unload()
    return {k: v.detach() for k, v in merged.state_dict().items()}
