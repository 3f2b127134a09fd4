"""Hugging Face folders with `transformers` installed (an optional extra) and without it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from modelbrowse.core.errors import SourceError, UsageError
from modelbrowse.core.recipe import load_edited, read_recipe, save_edited
from modelbrowse.core.sources import checkpoint as checkpoint_source
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.core.sources.files import CheckpointOptions
from modelbrowse.core.sources.weights_tree import Weights
from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.cli import main
from modelbrowse.tui.options import AppOptions
from tests.app_support import wait_for, wait_for_text
from tests.model_support import submodule
from tests.saving_support import assert_same_tensors

transformers = pytest.importorskip("transformers")

TINY_GPT2 = {"n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 64, "n_positions": 16}


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 saved as transformers saves it: the output layer is tied to the embedding
    and saved once."""
    config = transformers.GPT2Config(**TINY_GPT2, bos_token_id=0, eos_token_id=0)
    config.architectures = ["GPT2LMHeadModel"]
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def config_only(tmp_path: Path, gpt2_folder: Path) -> Path:
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "config.json").write_text((gpt2_folder / "config.json").read_text())
    return folder


def test_a_folder_is_loaded_into_the_architecture_its_config_names(gpt2_folder: Path) -> None:
    source = resolve_source(str(gpt2_folder))
    model, is_meta = source.build_structure()
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert not is_meta  # the file's tensors were taken as they are
    tied = model.get_parameter("transformer.wte.weight")
    assert model.get_parameter("lm_head.weight") is tied  # the tie saved once
    with torch.no_grad():
        reference = transformers.GPT2LMHeadModel.from_pretrained(gpt2_folder)
    assert_same_tensors(model.state_dict(), reference.state_dict())
    rows = dict(source.info)
    assert rows["fit"] == "fits GPT2LMHeadModel (tiny-gpt2/config.json): all 28 tensors loaded"


def test_keys_only_shows_the_keys_and_is_recorded(tmp_path: Path, gpt2_folder: Path) -> None:
    source = resolve_source(str(gpt2_folder), checkpoint=CheckpointOptions(keys_only=True))
    model, _ = source.build_structure()
    assert isinstance(model, Weights)
    assert "lm_head.weight" not in model.state_dict()  # saved once, under the embedding's name
    out = tmp_path / "keys.pt"
    save_edited(model, out, source, None, [])
    assert read_recipe(f"{out}.recipe.json")["source"]["checkpoint"]["keys_only"] is True
    with pytest.raises(UsageError, match="--keys-only and --arch contradict"):
        resolve_source(
            str(gpt2_folder), arch="resnet18", checkpoint=CheckpointOptions(keys_only=True)
        )


def test_a_config_the_architecture_cannot_be_built_from_falls_back_to_the_keys(
    tmp_path: Path, gpt2_folder: Path
) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((gpt2_folder / "model.safetensors").read_bytes())
    config = {"model_type": "my-own-model", "architectures": ["MyOwnModel"]}
    (folder / "config.json").write_text(json.dumps(config))
    source = resolve_source(str(folder))
    model, _ = source.build_structure()
    assert isinstance(model, Weights)
    assert dict(source.info)["architecture"].startswith("not built: transformers cannot read")


def test_without_transformers_the_folder_opens_as_its_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gpt2_folder: Path
) -> None:
    monkeypatch.setattr(checkpoint_source, "transformers_installed", lambda: False)
    source = resolve_source(str(gpt2_folder))
    model, _ = source.build_structure()
    assert isinstance(model, Weights)
    hint = dict(source.info)["architecture"]
    assert hint == "from the keys; pip install 'modelbrowse[hf]' builds it from config.json"

    monkeypatch.setattr("modelbrowse.core.sources.hf_models.transformers_installed", lambda: False)
    with pytest.raises(SourceError, match=r"needs transformers, which is not installed"):
        resolve_source(str(config_only(tmp_path, gpt2_folder)))


def test_a_config_alone_builds_on_meta_and_prints(
    tmp_path: Path, gpt2_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = config_only(tmp_path, gpt2_folder)
    model, is_meta = resolve_source(str(folder)).build_structure()
    assert is_meta and all(p.is_meta for p in model.parameters())
    assert main([str(folder / "config.json"), "--print", "--depth", "1"]) == 0
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    assert "format Hugging Face config (no weights)" in lines
    assert "(root) GPT2LMHeadModel 28.0K" in lines
    assert main([str(folder), "--print", "--arch", "resnet18"]) == 2
    error = capsys.readouterr().err
    assert (
        error.strip()
        == f"modelbrowse: error: --arch: {folder} is a config without weights; nothing to load"
    )


def test_edits_on_the_built_architecture_save_and_load_back(
    tmp_path: Path, gpt2_folder: Path
) -> None:
    from modelbrowse.core.edits.modules import Replace

    source = resolve_source(str(gpt2_folder))
    model, _ = source.build_structure()
    edit = Replace("lm_head", "nn.Linear(32, 5, bias=False)")
    edit.apply(model)
    out = tmp_path / "five-way.safetensors"
    save_edited(model, out, source, None, [edit])
    loaded = load_edited(out)
    assert type(loaded).__name__ == "GPT2LMHeadModel"
    assert submodule(loaded, "lm_head", nn.Linear).out_features == 5
    assert_same_tensors(loaded.state_dict(), model.state_dict())


async def test_meta_shows_shapes_without_values_and_refuses_edits(
    tmp_path: Path, gpt2_folder: Path
) -> None:
    app = ModelBrowseApp(AppOptions(str(config_only(tmp_path, gpt2_folder)), meta=True))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_text(pilot, "meta: shapes only, no values")
        screen = await wait_for_text(pilot, "config model_type")
        assert re.search(r"││ config +│", screen)  # the root's block is titled for a config
        await pilot.press(":", *"transformer.wte.weight", "enter")
        await wait_for_text(pilot, "meta tensor: no data")
        for key in ("f", "w"):
            await pilot.press(key)
            await wait_for(
                pilot,
                lambda: any(
                    "--meta: the model has no values" in n.message for n in app._notifications
                ),
            )
            app.clear_notifications()
        assert app.session.index is not None and app.session.index.is_meta
        assert not app.session.materialising


def test_meta_refuses_what_needs_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["alexnet", "--meta", "--diff", "alexnet", "--print"])
    assert exited.value.code == 2
    assert "--meta has no values to compare or write" in capsys.readouterr().err


def test_checkpoint_flags_on_a_zoo_model_are_refused() -> None:
    with pytest.raises(UsageError, match=r"^--key, --trust-pickle apply to a checkpoint file"):
        from modelbrowse.core.sources.files import CheckpointOptions

        resolve_source("alexnet", checkpoint=CheckpointOptions(key="model", trust_pickle=True))


def cache_with(cache: Path, repo: str, folder: Path, commit: str = "a" * 40) -> Path:
    """`folder`'s files laid out as the Hugging Face cache keeps a download: blobs, and a
    snapshot of links to them named by the commit that `refs/main` points to."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for index, file in enumerate(sorted(folder.iterdir())):
        blob = root / "blobs" / f"blob{index}"
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(Path("../../blobs") / blob.name)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snapshot


def test_a_model_in_the_hugging_face_cache_opens_offline(
    tmp_path: Path, gpt2_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache_with(tmp_path, "tiny/gpt2", gpt2_folder)
    model, _ = resolve_source("hf:tiny/gpt2").build_structure()
    assert type(model).__name__ == "GPT2LMHeadModel"
    tied = model.get_parameter("transformer.wte.weight")
    assert model.get_parameter("lm_head.weight") is tied  # tied, and shown as shared
    model, _ = resolve_source(f"hf:tiny/gpt2@{'a' * 40}").build_structure()
    assert type(model).__name__ == "GPT2LMHeadModel"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("hf:nobody/nothing", "hf:nobody/nothing is not in the Hugging Face cache ("),
        ("hf:tiny/gpt2@v2", "hf:tiny/gpt2 has no revision 'v2' in the cache"),
        ("hf:../../etc", "is not a Hugging Face model name: use hf:ORG/NAME[@REVISION]"),
        ("hf:tiny/broken", "model.safetensors is only partly downloaded"),
    ],
)
def test_what_is_not_in_the_cache_is_one_line_naming_the_cache(
    tmp_path: Path, gpt2_folder: Path, monkeypatch: pytest.MonkeyPatch, spec: str, words: str
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    cache_with(tmp_path, "tiny/gpt2", gpt2_folder)
    broken = cache_with(tmp_path, "tiny/broken", gpt2_folder)
    (broken / "model.safetensors").resolve().unlink()
    with pytest.raises(SourceError) as caught:
        resolve_source(spec)
    message = str(caught.value)
    assert words in message
    assert "\n" not in message
    if "not in the Hugging Face cache" in message:
        assert str(tmp_path / "models--nobody--nothing") in message


def test_print_of_a_cached_model_through_the_command_line(
    tmp_path: Path,
    gpt2_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    cache_with(tmp_path / "hub", "tiny/gpt2", gpt2_folder)
    assert main(["hf:tiny/gpt2", "--print", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "GPT2LMHeadModel" in out
    assert "lm_head" in out


def test_cached_repositories_are_suggested(
    tmp_path: Path, gpt2_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    cache_with(tmp_path, "tiny/gpt2-small", gpt2_folder)
    with pytest.raises(SourceError, match=r"cached: hf:tiny/gpt2-small$"):
        resolve_source("hf:tiny/gpt2-smal")
    with pytest.raises(SourceError, match=r"\(did you mean: hf:tiny/gpt2-small"):
        resolve_source("gpt2-small")


# --- a folder with code of its own (auto_map) ---------------------------------------------------


def custom_code_folder(tmp_path: Path, model_type: str, weights: bool = True) -> Path:
    """A Hugging Face folder whose config names its own Python files, which touch a marker."""
    folder = tmp_path / f"custom-{model_type}"
    folder.mkdir()
    config = {
        "model_type": model_type,
        "architectures": ["XModel"],
        "auto_map": {
            "AutoConfig": "configuration_x.XConfig",
            "AutoModel": "modeling_x.XModel",
        },
        **TINY_GPT2,
    }
    (folder / "config.json").write_text(json.dumps(config))
    touch = f"import pathlib\npathlib.Path({str(tmp_path / 'marker')!r}).touch()\n"
    (folder / "configuration_x.py").write_text(touch)
    (folder / "modeling_x.py").write_text(touch)
    if weights:
        from safetensors.torch import save_file

        save_file({"encoder.weight": torch.ones(4, 3), "head.bias": torch.zeros(2)},
                  str(folder / "model.safetensors"))  # fmt: skip
    return folder


@pytest.mark.parametrize("model_type", ["x-custom", "gpt2"])
@pytest.mark.parametrize("answer", [None, "y\ny\ny\n"])
def test_a_folders_own_code_never_runs_nor_asks(
    tmp_path: Path, model_type: str, answer: str | None
) -> None:
    import subprocess
    import sys

    from tests.e2e.test_cli import ROOT

    folder = custom_code_folder(tmp_path, model_type)
    command = [sys.executable, "-m", "modelbrowse.tui", str(folder), "--print"]
    # Closed, or a user answering "y" to any question: neither may run the folder's code.
    given: dict[str, Any] = {"input": answer} if answer else {"stdin": subprocess.DEVNULL}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, **given)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "custom code" not in output and "trust_remote_code" not in output
    assert "from the keys: config.json names code of its own (auto_map), which modelbrowse " \
        "never runs" in output  # fmt: skip
    assert "encoder" in result.stdout and "head" in result.stdout  # the weights' keys
    assert not (tmp_path / "marker").exists()

    (folder / "model.safetensors").unlink()  # a config alone has nothing else to show
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, **given)
    assert result.returncode == 2
    assert result.stderr == (
        f"modelbrowse: error: {folder}: config.json names code of its own (auto_map), which "
        "modelbrowse never runs; with its weights it opens as their keys\n"
    )
    assert not (tmp_path / "marker").exists()


def test_transformers_is_never_asked_to_trust_a_folders_code(
    tmp_path: Path, gpt2_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every transformers call passes trust_remote_code=False (None would ask on a terminal)."""
    calls: list[dict[str, object]] = []
    original = transformers.AutoConfig.from_pretrained

    def recorded(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", recorded)
    resolve_source(str(config_only(tmp_path, gpt2_folder))).build_structure()
    assert calls and all(call.get("trust_remote_code") is False for call in calls)
