"""Checkpoints written on another machine's GPU open on this one's CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modelbrowse.core.sources.base import resolve_source
from tests.saving_support import assert_same_tensors


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_checkpoint_saved_on_a_gpu_opens_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, legacy: bool
) -> None:
    state = {"layer.weight": torch.randn(3, 4), "layer.bias": torch.randn(3)}
    path = tmp_path / "trained-on-gpu.pt"
    with monkeypatch.context() as patched:  # the file says its storages live on cuda:0
        patched.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)  # what a plain load does with such a file
    model, _ = resolve_source(str(path)).build_structure()
    assert all(t.device.type == "cpu" for t in model.state_dict().values())
    assert_same_tensors(model.state_dict(), state)
