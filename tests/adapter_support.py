"""PEFT adapters for tests, saved by peft itself from tiny base models."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve()
BASE_SPEC = f"{HERE}:Base"


class Base(nn.Module):
    """A module of each kind LoRA adapts: embedding, linear, convolution; and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.fc1 = nn.Linear(8, 16)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc2 = nn.Linear(16, 4)
        self.head = nn.Linear(4, 2)


class Narrow(nn.Module):
    """Base's names with other sizes: an adapter for Base does not fit it."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.fc1 = nn.Linear(8, 32)
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc2 = nn.Linear(16, 4)
        self.head = nn.Linear(4, 2)


def lora_config(**fields: Any) -> Any:
    from peft import LoraConfig

    settings: dict[str, Any] = {
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["embed", "fc1", "fc2", "conv", "nothere"],
        "modules_to_save": ["head"],
        "init_lora_weights": False,  # B is not zero: the update has a norm
    }
    settings.update(fields)
    return LoraConfig(**settings)


def save_adapter(
    folder: Path, base: nn.Module, config: Any, *, safe: bool = True
) -> tuple[nn.Module, Any]:
    """`get_peft_model(base, config).save_pretrained(folder)`; returns a copy of the base as it
    was and the peft model (whose merged weights give the true update)."""
    from peft import get_peft_model

    before = copy.deepcopy(base)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(base, config)
        model.save_pretrained(str(folder), safe_serialization=safe)
    return before, model


def merged_update_norms(before: nn.Module, model: Any, paths: list[str]) -> dict[str, float]:
    """||W_merged - W|| per adapted module, from peft's own merge."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = model.merge_and_unload()
    norms = {}
    for path in paths:
        old = before.get_submodule(path).get_parameter("weight").detach().double()
        new = merged.get_submodule(path).get_parameter("weight").detach().double()
        norms[path] = float((new - old).norm())
    return norms


def set_config(folder: Path, **fields: Any) -> None:
    """Change fields of a saved adapter_config.json."""
    path = folder / "adapter_config.json"
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def tiny_llama(folder: Path) -> nn.Module:
    """A two-layer Llama saved with `save_pretrained`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    llama = LlamaForCausalLM(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        llama.save_pretrained(str(folder))
    model: nn.Module = llama
    return model
