"""`timm:NAME` sources (the timm extra): the same meta-first opening as torchvision's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from modelbrowse.core.errors import SourceError
from modelbrowse.core.recipe import load_edited, save_edited
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.core.sources.timm_models import timm_names
from modelbrowse.tui.cli import main
from tests.model_support import submodule

pytest.importorskip("timm")


def test_a_timm_model_builds_on_meta_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    source = resolve_source("timm:resnet18")
    model, is_meta = source.build_structure()
    assert is_meta
    assert type(model).__name__ == "ResNet"
    assert source.default_input == ((1, 3, 224, 224),)
    assert main(["timm:resnet18", "--print", "--depth", "0"]) == 0
    assert capsys.readouterr().out.split()[:3] == ["(root)", "ResNet", "11.7M"]


def test_kw_passes_through_to_create_model_and_a_tag_names_the_architecture() -> None:
    model, _ = resolve_source("timm:resnet18.a1_in1k", {"num_classes": 10}).build_structure()
    assert submodule(model, "fc", nn.Linear).out_features == 10


def test_the_input_size_comes_from_timms_config() -> None:
    assert resolve_source("timm:vit_base_patch16_384").default_input == ((1, 3, 384, 384),)


def test_unknown_names_suggest_timm_and_torchvision_models() -> None:
    with pytest.raises(SourceError, match=r"unknown timm model 'resnet5' \(did you mean: timm:"):
        resolve_source("timm:resnet5")
    with pytest.raises(SourceError) as caught:
        resolve_source("resnet50d")
    assert "(did you mean: timm:resnet50d, resnet50" in str(caught.value)


def test_without_timm_a_timm_source_is_one_line_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm fails as if not installed
    timm_names.cache_clear()
    try:
        with pytest.raises(SourceError) as caught:
            resolve_source("timm:resnet18")
        assert str(caught.value) == (
            "timm is not installed: pip install 'modelbrowse[timm]' (or pip install timm) "
            "to open timm:resnet18"
        )
        with pytest.raises(SourceError, match=r"'resnet50d' \(did you mean: resnet50, "):
            resolve_source("resnet50d")  # no timm: no timm suggestion, no error about it
    finally:
        timm_names.cache_clear()


def test_an_edited_timm_model_saves_and_loads_back(tmp_path: Path) -> None:
    from modelbrowse.core.edits.history import EditHistory
    from modelbrowse.core.edits.modules import Replace

    source = resolve_source("timm:resnet18", {"num_classes": 5})
    model = source.build_real(3)
    history = EditHistory(model)
    history.apply(Replace("fc", "nn.Linear(512, 2)"))
    weights = tmp_path / "edited.safetensors"
    save_edited(model, weights, source, 3, history.done)
    loaded = load_edited(weights)
    assert submodule(loaded, "fc", nn.Linear).out_features == 2
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
