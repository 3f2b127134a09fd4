"""A safetensors file's keys come in the order the safetensors library lists them: sorted."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from modelbrowse.core.reading.safetensors_header import read_header


def test_keys_are_listed_as_safe_open_lists_them(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    # Mixed dtypes: the writer orders the data (and the header) by alignment, not by name.
    tensors = {
        "layer1.weight": torch.zeros(4, dtype=torch.float16),
        "conv1.weight": torch.zeros(4, dtype=torch.float32),
        "fc.bias": torch.zeros(2, dtype=torch.float64),
        "bn1.weight": torch.zeros(3, dtype=torch.float32),
    }
    save_file(tensors, str(path))
    with safe_open(str(path), framework="pt") as handle:
        expected = list(handle.keys())
    assert list(read_header(path).tensors) == expected == sorted(tensors)
