"""AddLora: the plan before applying, apply and undo exactly, the recipe, the adapter folder
that peft loads, and `load_edited` giving the PeftModel back."""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from modelbrowse.core.edits.base import EditError
from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.edits.lora import AddLora, match_targets, plan_for_paths
from modelbrowse.core.edits.modules import Replace
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.recipe import (
    edits_of,
    load_edited,
    read_recipe,
    recipe_path_for,
    replay_recipe,
    save_edited,
)
from modelbrowse.core.recipe_lora import save_adapter_edited
from modelbrowse.core.sources.base import resolve_source
from tests.lora_support import TINY_LLAMA, tiny_llama

pytest.importorskip("peft")

QV = ["q_proj", "v_proj"]
ATTENTION = [f"model.layers.{n}.self_attn.{p}" for n in (0, 1) for p in QV]


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything an undo must give back: modules by identity, tensors, flags, attributes."""
    return {
        "modules": [(p, id(m)) for p, m in model.named_modules()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "flags": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "attributes": sorted(vars(model)),
    }


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    states = a["state"].keys() == b["state"].keys() and all(
        torch.equal(a["state"][k], b["state"][k]) for k in a["state"]
    )
    return states and all(a[k] == b[k] for k in ("modules", "flags", "attributes"))


def trainable(model: nn.Module) -> list[str]:
    return sorted(n for n, p in model.named_parameters() if p.requires_grad)


def quiet_peft_model(base: nn.Module, folder: Path) -> Any:
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(base, str(folder), is_trainable=True)


def test_apply_undo_redo_on_a_tiny_llama_restore_exactly() -> None:
    torch.manual_seed(0)
    model = tiny_llama()
    before = snapshot(model)
    index = NodeIndex(model)
    history = EditHistory(model)
    edit = AddLora("*proj", QV, seed=3, modules_to_save=["lm_head"])
    history.apply(edit)
    edit.update_index(index)
    assert edit.adapted == ATTENTION
    assert edit.saved == ["lm_head"]
    assert trainable(model) == sorted(
        [f"{p}.lora_{ab}.default.weight" for p in ATTENTION for ab in "AB"]
        + ["lm_head.modules_to_save.default.weight"]
    )
    lora_a = model.get_parameter("model.layers.0.self_attn.q_proj.lora_A.default.weight")
    assert index.totals().trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert index.node("model.layers.0.self_attn.q_proj.base_layer.weight")  # paths stay

    history.undo()
    edit.update_index(index)
    assert same(snapshot(model), before)
    assert index.totals().trainable == index.totals().params
    history.redo()  # the same adapters, with their values
    assert model.get_parameter("model.layers.0.self_attn.q_proj.lora_A.default.weight") is lora_a
    assert trainable(model) == trainable(model) and hasattr(model, "peft_config")


def test_the_plan_lists_what_gets_adapters_and_what_cannot() -> None:
    model = tiny_llama()
    plan = plan_for_paths(model, ["model.layers.0", "model.layers.1.self_attn.q_proj"])
    assert plan.adapted == (
        *(f"model.layers.0.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj", "o_proj")),
        *(f"model.layers.0.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")),
        "model.layers.1.self_attn.q_proj",
    )
    assert plan.unadaptable == (
        ("model.layers.0.mlp.act_fn", "SiLUActivation"),
        ("model.layers.0.input_layernorm", "LlamaRMSNorm"),
        ("model.layers.0.post_attention_layernorm", "LlamaRMSNorm"),
    )
    assert plan.unadaptable_text().startswith("3 cannot take LoRA: model.layers.0.mlp.act_fn")
    assert plan_for_paths(model, ATTENTION).targets == tuple(QV)  # names, when exact
    assert plan_for_paths(model, ATTENTION[:1]).targets == tuple(ATTENTION[:1])


def fresh_alexnet() -> nn.Module:
    """Its own AlexNet: these tests leave adapters on it (the shared fixture is undone)."""
    from torchvision.models import alexnet

    model: nn.Module = alexnet()
    return model


def test_targets_match_what_peft_adapts() -> None:
    from peft import LoraConfig, get_peft_model

    for model, targets in ((tiny_llama(), QV), (fresh_alexnet(), ["classifier.1", "6", "8"])):
        planned = match_targets(model, targets).adapted
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=targets))
        assert list(planned) == peft_model.base_model.targeted_module_names


def test_targets_peft_would_skip_or_refuse_are_one_line_errors() -> None:
    alexnet = fresh_alexnet()
    before = snapshot(alexnet)
    cases = [
        (["nothere"], "target_modules ['nothere'] match no module"),
        (["classifier.2"], "1 cannot take LoRA: classifier.2 (ReLU)"),
        (["classifier.6"], "modules_to_save 'head' matches no module"),
    ]
    for targets, message in cases:
        with pytest.raises(EditError, match=re.escape(message)):
            AddLora("x", targets, modules_to_save=["head"]).apply(alexnet)
        assert same(snapshot(alexnet), before)
    with pytest.raises(EditError, match="lora_dropout is a number from 0"):
        AddLora("x", ["classifier.6"], lora_dropout=1.5).apply(alexnet)
    AddLora("x", ["classifier.6"]).apply(alexnet)
    with pytest.raises(EditError, match="already has PEFT adapters"):
        AddLora("x", ["classifier.4"]).apply(alexnet)


def test_without_peft_the_error_names_the_extra(
    alexnet: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(
        EditError, match=r"LoRA needs the peft package: pip install 'modelbrowse\[peft\]'"
    ):
        AddLora("x", ["classifier.6"]).apply(alexnet)


def test_as_code_and_the_recipe_replay_the_same_adapters() -> None:
    torch.manual_seed(0)
    fresh = tiny_llama()
    model = tiny_llama()
    model.load_state_dict(fresh.state_dict())
    edit = AddLora("*proj", QV, r=4, lora_alpha=8, lora_dropout=0.0, seed=11)
    edit.apply(model)
    scope: dict[str, Any] = {"torch": torch, "model": fresh}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec("\n".join(edit.as_code()), scope)  # the edit's own code
    peft_model = scope["model"]
    for name, value in model.state_dict().items():
        assert torch.equal(peft_model.state_dict()[f"base_model.model.{name}"], value), name
    again = edits_of({"edits": [edit.to_dict()]})[0]
    assert isinstance(again, AddLora) and again.to_dict() == edit.to_dict()


def test_written_folder_loads_in_peft_and_trains_only_the_adapters(tmp_path: Path) -> None:
    source = resolve_source(TINY_LLAMA)
    model = source.build_real(7)
    edit = AddLora("*proj", QV, seed=5)
    edit.apply(model)
    with torch.no_grad():  # as after training: B is no longer zero
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()
    folder = tmp_path / "adapter"
    report = save_adapter_edited(model, folder, source, 7, [edit], edit)
    assert report.tensors == 8
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (8, 16, QV)
    modes = {path.name: path.stat().st_mode & 0o777 for path in folder.iterdir()}
    assert len(set(modes.values())) == 1, modes  # every file readable as a new file is

    peft_model = quiet_peft_model(source.build_real(7), folder)
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        model.eval()
        peft_model.eval()
        assert torch.equal(peft_model(tokens).logits, model(tokens).logits)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    peft_model.train()
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    peft_model(tokens, labels=tokens).loss.backward()
    optimizer.step()
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert changed == {n for n, p in peft_model.named_parameters() if p.requires_grad}

    loaded = load_edited(folder, source=TINY_LLAMA)
    assert type(loaded).__name__ == "PeftModel"
    assert trainable(loaded) == trainable(peft_model)
    for name, value in model.state_dict().items():  # the values written, not those trained
        assert torch.equal(loaded.state_dict()[f"base_model.model.{name}"], value), name


def test_alexnet_with_a_new_head_kept_trainable(tmp_path: Path) -> None:
    source = resolve_source("alexnet")
    model = source.build_real(1)
    history = EditHistory(model)
    history.apply(Replace("classifier.6", "nn.Linear(4096, 10)", seed=2))
    edit = AddLora(
        "classifier", ["classifier.1", "classifier.4"], modules_to_save=["classifier.6"], seed=3
    )
    history.apply(edit)
    folder = tmp_path / "alexnet-lora"
    save_adapter_edited(model, folder, source, 1, history.done, edit)
    recipe = read_recipe(recipe_path_for(folder / "adapter_model.safetensors"))
    assert [e["op"] for e in recipe["edits"]] == ["replace", "add_lora"]
    assert recipe["weights"]["format"] == "peft-adapter"

    loaded = load_edited(folder)
    assert trainable(loaded) == [f"base_model.model.{n}" for n in trainable(model)]
    assert "base_model.model.classifier.6.modules_to_save.default.weight" in trainable(loaded)
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[f"base_model.model.{name}"], value), name

    save_adapter_edited(model, folder, source, 1, history.done, edit)  # replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alexnet-lora"]


def test_a_recipe_replayed_to_one_file_loads_as_the_peft_model(tmp_path: Path) -> None:
    source = resolve_source("alexnet")
    model = source.build_real(1)
    edit = AddLora("classifier", ["classifier.1", "classifier.4"], seed=3)
    edit.apply(model)
    first = tmp_path / "first.pt"
    save_edited(model, first, source, 1, [edit])
    again = tmp_path / "again.safetensors"
    replay_recipe(recipe_path_for(first), resolve_source("alexnet"), again)
    loaded = load_edited(again)
    assert type(loaded).__name__ == "PeftModel"
    assert trainable(loaded) == [f"base_model.model.{n}" for n in trainable(model)]
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[f"base_model.model.{name}"], value), name
