"""Casting to bfloat16 with norms and biases kept in float32: dtypes, ties, undo, the code,
the recipe, and `--dtype` when writing."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from modelbrowse.core.edits.base import Edit, EditError
from modelbrowse.core.edits.cast import Cast, default_keep, parse_keep, unmatched
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.recipe import RecipeError, load_edited, read_recipe, save_edited
from modelbrowse.core.saving.weights import read_weights
from modelbrowse.core.sources.base import Source, resolve_source
from modelbrowse.core.sources.checkpoint import resolve_checkpoint
from modelbrowse.tui.cli import main
from tests.quantized_support import write_quantized
from tests.saving_support import assert_same_tensors, one_line

transformers = pytest.importorskip("transformers")

NORMS = ("input_layernorm", "post_attention_layernorm", "model.norm")


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with its lm_head tied to the embedding, as `save_pretrained` writes it."""
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        tie_word_embeddings=True,
    )
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "tiny-llama"
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def dtypes(model: nn.Module) -> dict[str, torch.dtype]:
    named = [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]
    return {name: tensor.dtype for name, tensor in named}


def expected_llama(name: str) -> torch.dtype:
    if any(norm in name for norm in NORMS) or "inv_freq" in name:
        return torch.float32
    return torch.bfloat16


def test_llama_cast_to_bf16_keeps_norms_ties_and_flags(llama_folder: Path) -> None:
    model, _ = resolve_source(str(llama_folder)).build_structure()
    embed = model.get_parameter("model.embed_tokens.weight")
    assert model.get_parameter("lm_head.weight") is embed
    history = EditHistory(model)
    history.apply(SetTrainable("model.layers.0", trainable=False))
    before = {
        name: (tensor, tensor.data) for name, tensor in model.state_dict(keep_vars=True).items()
    }
    keep = default_keep(model, "")
    assert [k for k in keep if "norm" in k] == [
        "model.layers.0.input_layernorm",
        "model.layers.0.post_attention_layernorm",
        "model.layers.1.input_layernorm",
        "model.layers.1.post_attention_layernorm",
        "model.norm",
    ]
    cast = Cast("", "bfloat16", keep)
    history.apply(cast)

    assert dtypes(model) == {name: expected_llama(name) for name in dtypes(model)}
    assert model.get_parameter("lm_head.weight") is embed  # one object, cast once
    assert embed.dtype == torch.bfloat16
    assert not model.get_parameter("model.layers.0.mlp.up_proj.weight").requires_grad
    assert model.get_parameter("model.layers.1.mlp.up_proj.weight").requires_grad
    assert cast.describe().startswith("cast the whole model to bfloat16, keeping model.layers.0")

    history.undo()
    for name, (tensor, data) in before.items():
        now = model.state_dict(keep_vars=True)[name]
        assert now is tensor and now.data.data_ptr() == data.data_ptr(), name
        assert now.dtype == torch.float32
    history.redo()
    assert model.get_parameter("model.norm.weight").dtype == torch.float32
    assert embed.dtype == torch.bfloat16


def test_alexnet_classifier_to_fp16_keeps_biases(alexnet: nn.Module) -> None:
    history = EditHistory(alexnet)
    keep = default_keep(alexnet, "classifier")
    assert keep == ["classifier.1.bias", "classifier.4.bias", "classifier.6.bias"]
    history.apply(Cast("classifier", "float16", keep))
    try:
        found = dtypes(alexnet)
        assert found["classifier.1.weight"] == torch.float16
        assert found["classifier.1.bias"] == torch.float32
        assert found["features.0.weight"] == torch.float32  # outside the subtree
    finally:
        history.undo()
    assert set(dtypes(alexnet).values()) == {torch.float32}


def test_the_code_casts_a_fresh_model_the_same_way(llama_folder: Path) -> None:
    source = resolve_source(str(llama_folder))
    model, _ = source.build_structure()
    cast = Cast("model.layers", "float16", ["*norm*", "model.layers.1.mlp"])
    EditHistory(model).apply(cast)
    fresh, _ = source.build_structure()
    exec("\n".join(cast.as_code()), {"torch": torch, "model": fresh})
    assert dtypes(fresh) == dtypes(model)
    assert dtypes(model)["model.layers.1.mlp.up_proj.weight"] == torch.float32
    assert dtypes(model)["model.layers.0.mlp.up_proj.weight"] == torch.float16
    assert dtypes(model)["model.embed_tokens.weight"] == torch.float32


def test_keep_entries_that_name_nothing_are_found(alexnet: nn.Module) -> None:
    entries = parse_keep(" classifier.1.bias, *.bias ,classifer.4, ")
    assert entries == ["classifier.1.bias", "*.bias", "classifer.4"]
    assert unmatched(alexnet, "classifier", entries) == ["classifer.4"]


def test_quantized_weights_are_not_cast(tmp_path: Path) -> None:
    folder = write_quantized(tmp_path / "m", "bnb-nf4").folder
    model, _ = resolve_checkpoint(str(folder), {}, None, None, None).build_structure(0)
    before = dtypes(model)
    with pytest.raises(EditError) as excinfo:
        Cast("model.layers.0", "bfloat16").apply(model)
    message = one_line(excinfo)
    assert message.startswith("model.layers.0.")
    assert message.endswith(" holds quantized weights: their stored values cannot be cast")
    assert dtypes(model) == before
    Cast("model.embed_tokens", "float16").apply(model)  # a plain tensor beside them
    assert model.get_parameter("model.embed_tokens.weight").dtype == torch.float16


def test_a_cast_to_an_unknown_dtype_is_one_line() -> None:
    with pytest.raises(Exception) as excinfo:
        Cast("", "int8")
    assert one_line(excinfo) == "cannot cast to 'int8': choose bfloat16, float16, float32"


def saved(source: Source, edits: list[Edit], path: Path, dtype: str | None = None) -> nn.Module:
    model = source.build_real(7)
    history = EditHistory(model)
    for edit in edits:
        history.apply(edit)
    save_edited(model, path, source, 7, edits, dtype=dtype)
    return model


@pytest.mark.parametrize("suffix", ["pt", "safetensors"])
def test_load_edited_replays_the_cast(llama_folder: Path, tmp_path: Path, suffix: str) -> None:
    source = resolve_source(str(llama_folder))
    model, _ = source.build_structure()
    edits: list[Edit] = [Cast("", "bfloat16", default_keep(model, ""))]
    path = tmp_path / f"llama.{suffix}"
    model = saved(source, edits, path)
    assert read_recipe(path.with_name(path.name + ".recipe.json"))["edits"][0]["op"] == "cast"
    loaded = load_edited(path)
    assert_same_tensors(loaded.state_dict(), model.state_dict())
    assert dtypes(loaded) == dtypes(model)
    assert loaded.get_parameter("lm_head.weight") is loaded.get_parameter(
        "model.embed_tokens.weight"
    )


def test_load_edited_on_meta_casts_before_loading(tmp_path: Path) -> None:
    source = resolve_source("alexnet")
    edits: list[Edit] = [Cast("", "bfloat16", ["classifier"])]
    path = tmp_path / "alexnet.safetensors"
    model = saved(source, edits, path)
    loaded = load_edited(path)
    assert_same_tensors(loaded.state_dict(), model.state_dict())
    assert loaded.get_parameter("features.0.weight").dtype == torch.bfloat16
    assert loaded.get_parameter("classifier.1.weight").dtype == torch.float32


def safetensors_dtypes(path: Path) -> dict[str, str]:
    """The dtype of every tensor as the file's header states it, read from its bytes, checked
    against the bytes each one takes."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    sizes = {"BF16": 2, "F16": 2, "F32": 4}
    for key, entry in header.items():
        if key != "__metadata__":
            start, end = entry["data_offsets"]
            numel = torch.Size(entry["shape"]).numel()
            assert end - start == numel * sizes[entry["dtype"]], key
    return {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_write_dtype_bf16_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = resolve_source("alexnet")
    first = tmp_path / "first.pt"
    edits: list[Edit] = [Cast("classifier", "float16", ["classifier.6"])]
    saved(source, edits, first)
    recipe = str(first) + ".recipe.json"
    out = tmp_path / "out.safetensors"
    assert main(["alexnet", "--recipe", recipe, "--output", str(out), "--dtype", "bf16"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}")
    found = safetensors_dtypes(out)
    assert found["features.0.weight"] == "BF16"
    assert found["features.0.bias"] == "BF16"  # --dtype keeps no biases: it casts everything
    assert found["classifier.1.weight"] == "F16"  # decided by the cast edit
    assert found["classifier.6.weight"] == "F32"
    written = read_recipe(str(out) + ".recipe.json")["edits"]
    assert written[-1] == {"op": "cast", "path": "", "dtype": "bfloat16", "leave": ["classifier"]}
    loaded = load_edited(out)
    assert_same_tensors(loaded.state_dict(), read_weights(out))


def test_write_dtype_keeps_a_tie_once(llama_folder: Path, tmp_path: Path) -> None:
    source = resolve_source(str(llama_folder))
    path = tmp_path / "llama.pt"
    saved(source, [], path, dtype="float16")
    state = read_weights(path)
    assert state["lm_head.weight"].dtype == torch.float16
    assert state["lm_head.weight"].data_ptr() == state["model.embed_tokens.weight"].data_ptr()
    loaded = load_edited(path)
    assert loaded.get_parameter("model.norm.weight").dtype == torch.float16


def test_a_bad_dtype_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe, out = str(tmp_path / "r.json"), str(tmp_path / "o.pt")
    assert main(["alexnet", "--recipe", recipe, "--output", out, "--dtype", "int8"]) == 2
    error = capsys.readouterr().err
    assert error == "modelbrowse: error: --dtype expects bf16, fp16 or fp32, got 'int8'\n"
    with pytest.raises(SystemExit) as exited:
        main(["alexnet", "--print", "--dtype", "bf16"])
    assert exited.value.code == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith("--dtype goes with --output (in the app, w chooses the dtype)")
    )
    assert not (tmp_path / "o.pt").exists()


def test_a_recipe_with_a_bad_cast_is_one_line(tmp_path: Path) -> None:
    source = resolve_source("alexnet")
    path = tmp_path / "a.pt"
    saved(source, [Cast("", "float16")], path)
    recipe = path.with_name(path.name + ".recipe.json")
    data = json.loads(recipe.read_text())
    data["edits"][0]["dtype"] = "int8"
    recipe.write_text(json.dumps(data))
    with pytest.raises(RecipeError) as excinfo:
        read_recipe(recipe)
    assert "'edits[0].dtype' is 'int8', not one of bfloat16, float16, float32" in one_line(excinfo)
