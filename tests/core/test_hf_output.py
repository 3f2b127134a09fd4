"""Hugging Face folders from the command line and the session: what transformers loads back,
with no missing or unexpected keys, and the config it describes."""

from __future__ import annotations

import gc
import io
import json
import logging
import warnings
import weakref
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from safetensors import safe_open
from torch import nn

from modelbrowse.core.edits.modules import Replace
from modelbrowse.core.saving import hf_output
from modelbrowse.core.saving.hf_folder import FolderReport
from modelbrowse.core.saving.hf_output import RECIPE_NAME, convert_folder, updated_config
from modelbrowse.core.session import LoadState, Session, open_model
from modelbrowse.tui.cli import main
from modelbrowse.tui.options import AppOptions

transformers = pytest.importorskip("transformers")


def load(folder: Path, auto: Any = None) -> nn.Module:
    """`from_pretrained(folder)`, asserting that transformers reported no missing, unexpected
    or mismatched key and logged nothing (its warnings switched on for the load)."""
    auto = auto or transformers.AutoModelForCausalLM
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("transformers")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    logger.addHandler(handler)
    try:
        model, info = auto.from_pretrained(str(folder), output_loading_info=True)
    finally:
        logger.removeHandler(handler)
        transformers.logging.set_verbosity(verbosity)
    assert info["missing_keys"] == info["unexpected_keys"] == info["mismatched_keys"] == set()
    assert stream.getvalue() == ""
    assert isinstance(model, nn.Module)
    return model


def assert_same_state(found: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = found.state_dict()
    assert state.keys() == expected.keys()
    for key, tensor in expected.items():
        assert state[key].dtype == tensor.dtype and torch.equal(state[key], tensor), key


@pytest.fixture(scope="module")
def original(tiny_llama_folder: Path) -> dict[str, torch.Tensor]:
    return load(tiny_llama_folder).state_dict()


@pytest.fixture(scope="module")
def dcp_folder(
    tiny_llama_folder: Path,
    original: dict[str, torch.Tensor],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    import torch.distributed.checkpoint as dcp

    folder = tmp_path_factory.mktemp("dcp") / "step-10"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no process group": one process saves alone
        dcp.save(dict(original), checkpoint_id=str(folder))
    return folder


def shard_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.safetensors"))


def session_on(spec: str) -> Session:
    session = Session(AppOptions(spec))
    session.opened(open_model(session.request, session.init_seed, lambda _: None))
    if session.load_state is LoadState.INITIALISING:
        session.materialised(session.build_real())
    session.start_history()
    return session


def test_an_hf_folder_is_written_again_in_shards(
    tiny_llama_folder: Path,
    original: dict[str, torch.Tensor],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "llama-20k"
    argv = [str(tiny_llama_folder), "--output", str(out), "--max-shard-size", "20KB"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out} (6 shards, 20 tensors, 88.6 KiB")
    assert shard_names(out) == [f"model-0000{k}-of-00006.safetensors" for k in range(1, 7)]
    assert all(p.stat().st_size <= 20_000 + 4096 for p in out.glob("*.safetensors"))
    index = json.loads((out / "model.safetensors.index.json").read_text())
    sizes = sum(t.numel() * t.element_size() for k, t in original.items() if k != "lm_head.weight")
    assert index["metadata"]["total_size"] == sizes
    assert "lm_head.weight" not in index["weight_map"]  # tied: written once, as transformers does
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ):
        assert (out / name).read_bytes() == (tiny_llama_folder / name).read_bytes(), name
    model = load(out)
    assert model.get_submodule("lm_head").weight is model.get_submodule("model.embed_tokens").weight
    assert_same_state(model, original)


def test_a_distributed_checkpoint_is_converted_with_its_arch(
    dcp_folder: Path,
    tiny_llama_folder: Path,
    original: dict[str, torch.Tensor],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for arch in (tiny_llama_folder, tiny_llama_folder / "config.json"):
        out = tmp_path / arch.name
        argv = [str(dcp_folder), "--output", str(out), "--arch", str(arch)]
        assert main([*argv, "--max-shard-size", "0.03MB"]) == 0
        assert capsys.readouterr().out.startswith(f"wrote {out} (4 shards, 20 tensors")
        assert (out / "tokenizer.json").read_bytes() == (
            tiny_llama_folder / "tokenizer.json"
        ).read_bytes()
        assert_same_state(load(out), original)


def test_a_distributed_checkpoint_is_read_one_tensor_at_a_time(
    dcp_folder: Path, tiny_llama_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each tensor is read from maps of its own, gone once it is written (nothing kept
    across tensors), in the model's order, and a tied output layer is never read."""
    asked: list[str] = []
    maps: list[weakref.ref[Any]] = []
    read = hf_output.chunked_tensor

    def recording(folder: Path, key: str, entry: Any, files: Any, device: str = "cpu") -> Any:
        asked.append(key)
        maps.append(weakref.ref(files))
        return read(folder, key, entry, files, device)

    monkeypatch.setattr(hf_output, "chunked_tensor", recording)
    source = AppOptions(str(dcp_folder), arch=str(tiny_llama_folder / "config.json")).resolve()
    report = convert_folder(source, tmp_path / "out", max_shard_size=30_000)
    assert isinstance(report, FolderReport) and report.tensors == 20
    assert asked == [k for k in load(tiny_llama_folder).state_dict() if k != "lm_head.weight"]
    gc.collect()
    assert len(maps) == 20 and all(ref() is None for ref in maps)


def test_the_model_part_of_a_training_save_is_converted(
    original: dict[str, torch.Tensor],
    tiny_llama_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import torch.distributed.checkpoint as dcp

    folder = tmp_path / "train-step"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": dict(original), "step": torch.tensor(7)}, checkpoint_id=str(folder))
    argv = [str(folder), "--output", str(tmp_path / "out"), "--arch", str(tiny_llama_folder)]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'out'} (1 shard, 20 tensors")
    assert_same_state(load(tmp_path / "out"), original)


def test_a_distributed_checkpoint_needs_an_arch_that_fits(
    dcp_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(dcp_folder), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "modelbrowse: error: a distributed checkpoint becomes a Hugging Face folder with its "
        "architecture's config: open it with --arch CONFIG (a config.json, or a folder "
        "holding one)\n"
    )
    other = tmp_path / "other"
    deeper = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    deeper.architectures = ["LlamaForCausalLM"]
    deeper.save_pretrained(other)
    assert main([str(dcp_folder), "--output", str(tmp_path / "out"), "--arch", str(other)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"modelbrowse: error: {dcp_folder} does not fit LlamaForCausalLM")
    assert ": 9 missing (model.layers.2.self_attn.q_proj.weight, " in error
    assert error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_only_folder_sources_become_folders(
    tiny_llama_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alexnet", "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        "modelbrowse: error: a Hugging Face folder is written from a model opened from a "
        "Hugging Face folder or a distributed checkpoint; name a .pt or .safetensors file\n"
    )
    argv = [str(tiny_llama_folder), "--output", str(tmp_path / "out"), "--max-shard-size", "lots"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "modelbrowse: error: --max-shard-size 'lots' is not a size: use a number of bytes or "
        "one like 500MB, 5GB or 2GiB\n"
    )
    with pytest.raises(SystemExit) as exited:
        main(["alexnet", "--output", str(tmp_path / "o.pt")])
    assert exited.value.code == 2
    assert (
        "error: --output goes with --recipe or --merge (or names a folder"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main([str(tiny_llama_folder), "--output", str(tmp_path / "out"), "--print"])
    assert "error: --output writes a Hugging Face folder; leave out --print" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


# --- edited, from the session and a recipe ---------------------------------------------------


def test_a_new_vocabulary_is_written_with_its_config(
    tiny_llama_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = session_on(str(tiny_llama_folder))
    assert session.save_name() == str(tiny_llama_folder.with_name("tiny-llama-edited"))
    session.apply(Replace("model.embed_tokens", "nn.Embedding(130, 32)", seed=1))
    session.apply(Replace("lm_head", "nn.Linear(32, 130, bias=False)", seed=2))
    assert session.history is not None
    edited = session.history.model.state_dict()
    out = tmp_path / "vocab-130"
    report = session.save(out, lambda _: None)
    assert isinstance(report, FolderReport) and report.folder == out
    session.saved(report)
    assert session.save_name() == str(out)
    config = json.loads((out / "config.json").read_text())
    before = json.loads((tiny_llama_folder / "config.json").read_text())
    assert config == before | {"vocab_size": 130, "tie_word_embeddings": False}
    assert shard_names(out) == ["model.safetensors"]
    assert not (out / "model.safetensors.index.json").exists()
    model = load(out)
    assert (
        model.get_submodule("lm_head").weight
        is not model.get_submodule("model.embed_tokens").weight
    )
    assert_same_state(model, edited)
    recipe = json.loads((out / RECIPE_NAME).read_text())
    assert [e["op"] for e in recipe["edits"]] == ["replace", "replace"]

    # The recipe again, without the app: the same folder.
    again = tmp_path / "again"
    argv = [str(tiny_llama_folder), "--recipe", str(out / RECIPE_NAME), "--output", str(again)]
    assert main([*argv, "--max-shard-size", "10KiB"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {again} (")
    assert len(shard_names(again)) > 1
    assert json.loads((again / "config.json").read_text()) == config
    assert_same_state(load(again), edited)


def test_a_new_classifier_head_changes_the_labels(tmp_path: Path) -> None:
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=3,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    source = tmp_path / "classifier"
    transformers.LlamaForSequenceClassification(config).save_pretrained(source)
    session = session_on(str(source))
    session.apply(Replace("score", "nn.Linear(16, 5, bias=False)", seed=3))
    out = tmp_path / "five"
    session.save(out, lambda _: None)
    written = json.loads((out / "config.json").read_text())
    assert written["id2label"] == {str(i): f"LABEL_{i}" for i in range(5)}
    assert written["label2id"] == {f"LABEL_{i}": i for i in range(5)}
    model = load(out, transformers.AutoModelForSequenceClassification)
    assert cast(Any, model).config.num_labels == 5
    assert session.history is not None
    assert_same_state(model, session.history.model.state_dict())


def test_the_config_follows_the_written_dtype() -> None:
    config = {"model_type": "llama", "dtype": "float32", "vocab_size": 8}
    assert updated_config(config, None, torch.float32) is None  # unchanged: copied as it is
    assert updated_config(config, None, torch.bfloat16) == config | {"dtype": "bfloat16"}
    old = {"model_type": "llama", "torch_dtype": "float16"}
    assert updated_config(old, None, torch.bfloat16) == {**old, "torch_dtype": "bfloat16"}
    bare = {"model_type": "llama"}
    assert updated_config(bare, None, torch.float32) is None
    assert updated_config(bare, None, torch.float16) == {**bare, "torch_dtype": "float16"}


def test_a_folder_written_in_bf16_keeps_what_a_cast_edit_decided(
    tiny_llama_folder: Path, tmp_path: Path
) -> None:
    from modelbrowse.core.edits.cast import Cast

    session = session_on(str(tiny_llama_folder))
    session.apply(Cast("model.norm", "float16"))
    out = tmp_path / "bf16"
    session.saved(session.save(out, lambda _: None, "bfloat16"))
    config = json.loads((out / "config.json").read_text())
    assert config.get("torch_dtype", config.get("dtype")) == "bfloat16"
    load(out)  # transformers loads it without a word
    with safe_open(out / "model.safetensors", "pt") as file:
        dtypes = {key: file.get_slice(key).get_dtype() for key in file.keys()}  # noqa: SIM118
    assert dtypes.pop("model.norm.weight") == "F16"  # the cast edit's, not --dtype's
    assert set(dtypes.values()) == {"BF16"}
    recipe = json.loads((out / RECIPE_NAME).read_text())
    assert [e["op"] for e in recipe["edits"]] == ["cast", "cast"]


def test_a_conversion_or_a_recipe_onto_its_own_source_is_refused(
    tiny_llama_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    folder = tmp_path / "llama"
    shutil.copytree(tiny_llama_folder, folder)
    recipe = tmp_path / "r.json"
    recipe.write_text(
        '{"version": 1, "source": "llama", "edits": '
        '[{"op": "set_trainable", "path": "model", "trainable": false}]}'
    )
    before = {path: path.read_bytes() for path in folder.iterdir()}
    for argv, problem in [
        ([str(folder), "--output", str(folder)], f"cannot write {folder}: it is the source"),
        ([str(folder), "--output", str(tmp_path)], f"cannot write {tmp_path}: it holds the source"),
        (
            [str(folder), "--recipe", str(recipe), "--output", str(folder)],
            f"cannot write {folder}: it is the source this reads",
        ),
    ]:
        assert main(argv) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"modelbrowse: error: {problem}"), line
    assert {path: path.read_bytes() for path in folder.iterdir()} == before
