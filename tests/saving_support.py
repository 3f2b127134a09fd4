"""Helpers shared by the saving and recipe tests: hashes, byte-exact comparison, a tied model."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

FORMATS = ["pt", "safetensors"]

TIED_NET = '''
import torch
from torch import nn


class TiedNet(nn.Module):
    """SharedNet without a non-persistent buffer: it loads on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.encoder = nn.Linear(8, 8)
        self.decoder = nn.Sequential()
        self.decoder.add_module("proj", self.encoder)
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("scale", torch.linspace(0.5, 1.5, 8))
'''


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_in(directory: Path) -> list[str]:
    """Every name in a directory, hidden ones (temporary files) included."""
    return sorted(p.name for p in directory.iterdir())


def as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The raw bytes: NaN payloads compare equal, -0.0 and 0.0 differ."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def assert_same_tensors(
    found: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> None:
    """The same keys, shapes, dtypes and bytes."""
    assert sorted(found) == sorted(expected)
    for key, tensor in expected.items():
        other = found[key]
        assert other.dtype == tensor.dtype, key
        assert tuple(other.shape) == tuple(tensor.shape), key
        assert not other.is_meta, key
        assert torch.equal(as_bytes(other), as_bytes(tensor)), key


def one_line(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    """The exception's message, checked to be one line."""
    message = str(excinfo.value)
    assert message and "\n" not in message, message
    return message


def write_tied_net(directory: Path) -> Path:
    """A models file with TiedNet; its source spec is `<path>:TiedNet`."""
    path = directory / "tied_models.py"
    path.write_text(TIED_NET)
    return path
