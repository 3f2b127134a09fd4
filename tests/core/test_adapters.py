"""PEFT adapters saved by peft: shown alone or on their base, with shapes, counts, the share of
the base, each update's norm against peft's own merge, and the names that matched nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.sources.adapters import AdapterSource
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.core.structure import read_structure
from modelbrowse.core.structure_index import preview_index
from modelbrowse.tui.cli import main
from tests.adapter_support import (
    BASE_SPEC,
    Base,
    lora_config,
    merged_update_norms,
    save_adapter,
    set_config,
    tiny_llama,
)
from tests.core.test_core_structure import assert_same_tree
from tests.core.test_hf_models import cache_with
from tests.e2e.test_cli_checkpoints import squeezed, the_error_line

ADAPTED = ["embed", "fc1", "conv", "fc2"]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float], int]:
    """A LoRA adapter of Base (r 4, alpha 8, one target that is not there, head saved whole):
    its folder, peft's merged update norm per module and the base's parameter count."""
    folder = tmp_path_factory.mktemp("adapter") / "lora"
    torch.manual_seed(0)
    before, model = save_adapter(folder, Base(), lora_config())
    base_params = sum(p.numel() for p in before.parameters())
    return folder, merged_update_norms(before, model, ADAPTED), base_params


def adapter_params(folder: Path) -> int:
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as handle:
        return sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())  # noqa: SIM118


def printed(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main([*args, "--print"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return squeezed(captured.out)


def test_an_adapter_alone_shows_its_method_settings_and_modules(
    adapter: tuple[Path, dict[str, float], int], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, norms, _ = adapter
    lines = printed(capsys, str(folder))
    params = adapter_params(folder)
    # peft keeps target_modules as a set: its order in the file is any
    assert set(lines[6].removeprefix("target_modules ").split(", ")) == {*ADAPTED, "nothere"}
    del lines[6]
    assert lines[:11] == [
        "format PEFT adapter (safetensors)",
        "method LoRA",
        "r 4",
        "lora_alpha 8",
        "scaling 2 (lora_alpha / r)",
        "dropout 0",
        "modules_to_save head",
        "adapted modules 4 (1 convolution, 1 embedding, 2 linear)",
        f"adapter parameters {params:,}",
        "base model not named in adapter_config.json; --arch BASE shows the adapter on it",
        "metadata format pt",
    ]
    assert (
        "warning: target_modules names that matched nothing in the adapter: 'nothere' "
        "(PEFT skips them silently)"
    ) in lines
    assert f"(root) Weights {params}" in lines
    assert "fc1.lora_A Group 32" in lines
    assert f"Total params: {params} trainable: {params} frozen: 0 buffers: 0 size: 1.5 KiB" in lines
    listed = lines[lines.index("adapted modules (4), ‖B·A‖·scaling:") + 1 :]
    assert [line.split()[0] for line in listed] == ["conv", "embed", "fc1", "fc2"]
    assert listed[0].startswith("conv A (4, 3, 3, 3) B (4, 4, 1, 1) rank 4 scaling 2 ")
    assert listed[1].startswith("embed A (4, 10) B (8, 4) rank 4 scaling 2 ")
    assert listed[2].startswith("fc1 A (4, 8) B (16, 4) rank 4 scaling 2 ")
    for line in listed:
        path, norm = line.split()[0], float(line.split()[-1])
        assert norm == pytest.approx(norms[path], rel=1e-5), path  # printed to 6 digits


def test_each_update_norm_is_peft_merged_weight_minus_the_base(
    adapter: tuple[Path, dict[str, float], int],
) -> None:
    folder, norms, _ = adapter
    source = resolve_source(str(folder))
    assert isinstance(source, AdapterSource)
    for path in ADAPTED:
        # peft merges in float32: its difference is exact to about 1e-7
        assert source.update_norm(path) == pytest.approx(norms[path], rel=1e-6)
    title, note = source.detail_note("fc1") or ("", "")
    assert title == "LoRA"
    assert note.splitlines()[:2] == ["rank 4, scaling 2 (alpha 8 / 4)", "A (4, 8), B (16, 4)"]
    assert float(note.splitlines()[2].removeprefix("‖B·A‖·scaling ")) == pytest.approx(
        norms["fc1"], rel=1e-5
    )
    assert source.detail_note("head") == (
        "adapter copy",
        "modules_to_save: the adapter holds its own 10 values",
    )
    assert source.detail_note("fc1.lora_A") is None
    assert source.marks == {"head": "≡", "embed": "Δ", "fc1": "Δ", "conv": "Δ", "fc2": "Δ"}


def test_on_its_base_the_base_tree_is_shown_with_the_share_and_unmatched_names(
    adapter: tuple[Path, dict[str, float], int], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, base_params = adapter
    lines = printed(capsys, str(folder), "--arch", BASE_SPEC)
    params = adapter_params(folder)
    share = f"{params / base_params:.2%}"
    assert f"adapter parameters {params:,} ({share} of the base's {base_params:,})" in lines
    assert f"base model {BASE_SPEC} (--arch)" in lines
    assert (
        "warning: target_modules names that matched nothing in the base: 'nothere' "
        "(PEFT skips them silently)"
    ) in lines
    assert "fc1 Linear 144" in lines
    assert (
        f"Total params: {base_params} trainable: {base_params} frozen: 0 buffers: 0 size: 1.6 KiB"
        in lines
    )
    assert "tensor kinds parameter or buffer guessed from the names" not in lines


def test_a_base_the_adapter_does_not_fit_is_named(
    adapter: tuple[Path, dict[str, float], int], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, _ = adapter
    lines = printed(capsys, str(folder), "--arch", BASE_SPEC.replace(":Base", ":Narrow"))
    assert "warning: fc1: A (4, 8) and B (16, 4) do not fit the base's weight (32, 8)" in lines


def test_rslora_scales_by_the_root_of_the_rank_and_alpha_pattern_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    config = lora_config(
        use_rslora=True,
        lora_alpha=6,
        alpha_pattern={"fc2": 12},
        target_modules=["fc1", "fc2"],
        modules_to_save=None,
    )
    before, model = save_adapter(tmp_path / "a", Base(), config)
    norms = merged_update_norms(before, model, ["fc1", "fc2"])
    source = resolve_source(str(tmp_path / "a"))
    assert isinstance(source, AdapterSource)
    assert source.layout.modules["fc1"].scaling == pytest.approx(3.0)  # 6 / sqrt(4)
    assert source.layout.modules["fc2"].scaling == pytest.approx(6.0)  # 12 / sqrt(4)
    for path in ("fc1", "fc2"):
        assert source.update_norm(path) == pytest.approx(norms[path], rel=1e-6)
    lines = printed(capsys, str(tmp_path / "a"))
    assert "method LoRA (rsLoRA)" in lines
    assert "scaling 3 to 6 (alpha_pattern, rank_pattern)" in lines


def test_alpha_pattern_in_pattern_syntax_is_not_run(
    adapter: tuple[Path, dict[str, float], int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _, _ = adapter
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in folder.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    set_config(copy, alpha_pattern={"(a+)+$": 100})
    lines = printed(capsys, str(copy))
    assert "scaling 2 (lora_alpha / r)" in lines
    assert (
        "warning: alpha_pattern keys in pattern syntax are not evaluated (lora_alpha is used): "
        "'(a+)+$'"
    ) in lines


def test_an_adapter_saved_as_bin_is_read_by_the_restricted_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    save_adapter(tmp_path / "bin", Base(), lora_config(), safe=False)
    assert (tmp_path / "bin" / "adapter_model.bin").is_file()
    lines = printed(capsys, str(tmp_path / "bin"))
    assert lines[0] == "format PEFT adapter (torch)"
    assert "adapted modules 4 (1 convolution, 1 embedding, 2 linear)" in lines


def test_the_preview_shows_the_tree_the_full_open_shows(
    adapter: tuple[Path, dict[str, float], int],
) -> None:
    folder, _, _ = adapter
    structure = read_structure(str(folder))
    assert structure is not None
    shown = preview_index(structure)
    assert shown is not None
    source = resolve_source(str(folder))
    from modelbrowse.core.index import NodeIndex

    model, _ = source.build_structure(0)
    assert_same_tree(shown, NodeIndex(model))
    assert structure.rows == source.info


def test_the_base_named_in_the_config_is_found_in_the_hugging_face_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from peft import LoraConfig

    saved = tmp_path / "saved"
    llama = tiny_llama(saved)
    cache = tmp_path / "cache"
    cache_with(cache, "tiny/llama", saved)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "gate"])
    config.init_lora_weights = False
    save_adapter(tmp_path / "lora", llama, config)
    set_config(tmp_path / "lora", base_model_name_or_path="tiny/llama")
    capsys.readouterr()  # transformers' progress bars while saving
    assert read_structure(str(tmp_path / "lora")) is None  # the base's tree: the full open
    lines = printed(capsys, str(tmp_path / "lora"))
    assert "base model hf:tiny/llama, from the local cache" in lines
    assert any(line.startswith("model.layers.0.self_attn.q_proj Linear") for line in lines)
    assert (
        "warning: target_modules names that matched nothing in the base: 'gate' "
        "(PEFT skips them silently)"
    ) in lines
    source = resolve_source(str(tmp_path / "lora"))
    source.build_structure(0)
    assert source.marks == {
        f"model.layers.{i}.self_attn.{name}": "Δ" for i in (0, 1) for name in ("q_proj", "v_proj")
    }
    set_config(tmp_path / "lora", base_model_name_or_path="tiny/missing")
    lines = printed(capsys, str(tmp_path / "lora"))
    assert (
        "base model tiny/missing, not in the local Hugging Face cache; --arch BASE shows the "
        "adapter on it"
    ) in lines


def test_edits_and_writing_are_refused(adapter: tuple[Path, dict[str, float], int]) -> None:
    folder, _, _ = adapter
    source = resolve_source(str(folder))
    assert source.edit_refusal == source.write_refusal
    assert source.write_refusal is not None and "read-only" in source.write_refusal
    from modelbrowse.core.recipe import save_edited

    model, _ = source.build_structure(0)
    with pytest.raises(ModelBrowseError, match="a PEFT adapter is shown read-only"):
        save_edited(model, folder / "out.pt", source, 0, [])
    assert not (folder / "out.pt").exists()


def test_an_adapter_bin_that_runs_code_is_refused_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.reading.hostile_files import code_running_pt

    marker = tmp_path / "ran"
    code_running_pt(tmp_path / "adapter_model.bin", marker)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    assert main([str(tmp_path), "--print"]) == 2
    line = the_error_line(capsys.readouterr())
    assert "adapter_model.bin" in line
    assert not marker.exists()


def test_an_adapter_in_the_cache_opens_by_its_hub_name(
    adapter: tuple[Path, dict[str, float], int],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _, _ = adapter
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    cache_with(tmp_path, "me/lora", folder)
    lines = printed(capsys, "hf:me/lora")
    assert lines[:2] == ["format PEFT adapter (safetensors)", "method LoRA"]
