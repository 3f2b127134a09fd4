"""`BASE --merge ADAPTER --output OUT` against PEFT's own `merge_and_unload`: bit for bit in
float32, within bf16's rounding in bf16; tied embeddings merged once; copies; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modelbrowse.core.merge import compute
from modelbrowse.core.reading.safetensors_header import read_header
from modelbrowse.core.saving.weights import read_weights
from modelbrowse.tui.cli import main
from tests.adapter_support import Base, lora_config, set_config
from tests.e2e.test_cli_checkpoints import the_error_line
from tests.merge_support import llama, lora, peft_merged


def merged(
    capsys: pytest.CaptureFixture[str], base: Path, adapter: Path, out: Path, *flags: str
) -> str:
    capsys.readouterr()  # what building the fixtures printed
    assert main([str(base), "--merge", str(adapter), "--output", str(out), *flags]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def assert_bitwise(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(found) == sorted(expected)
    for key, tensor in expected.items():
        assert found[key].dtype == tensor.dtype, key
        assert torch.equal(found[key], tensor), key


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    folder = tmp_path_factory.mktemp("llama") / "base"
    return folder, llama(folder)


@pytest.mark.parametrize("name", ["merged.safetensors", "merged.pt"])
def test_a_merge_equals_peft_merge_and_unload_bit_for_bit_in_float32(
    llama_folder: tuple[Path, nn.Module],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    folder, base = llama_folder
    expected = peft_merged(tmp_path / "adapter", base, lora())
    printed = merged(capsys, folder, tmp_path / "adapter", tmp_path / name)
    assert f"merged into {tmp_path / name}: 4 weights updated, 21 tensors" in printed
    found = read_weights(tmp_path / name)
    assert_bitwise(found, expected)
    before = base.state_dict()
    changed = [k for k in expected if not torch.equal(before[k], found[k])]
    assert changed == [
        f"model.layers.{n}.self_attn.{p}_proj.weight" for n in (0, 1) for p in ("q", "v")
    ]


def test_rslora_rank_and_alpha_patterns_scale_as_peft_does(
    llama_folder: tuple[Path, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, base = llama_folder
    config = lora(use_rslora=True, rank_pattern={"q_proj": 2}, alpha_pattern={"v_proj": 3})
    expected = peft_merged(tmp_path / "adapter", base, config)
    merged(capsys, folder, tmp_path / "adapter", tmp_path / "out.safetensors")
    assert_bitwise(read_weights(tmp_path / "out.safetensors"), expected)


def test_a_bf16_merge_is_within_bf16_rounding_of_peft(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = llama(tmp_path / "base", dtype=torch.bfloat16)
    expected = peft_merged(tmp_path / "adapter", base, lora())
    merged(capsys, tmp_path / "base", tmp_path / "adapter", tmp_path / "out.safetensors")
    found = read_weights(tmp_path / "out.safetensors")
    assert sorted(found) == sorted(expected)
    for key, tensor in expected.items():
        assert found[key].dtype == torch.bfloat16, key
        gap = (found[key].float() - tensor.float()).abs()
        assert bool((gap <= tensor.float().abs() * 2**-8 + 1e-30).all()), key
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(found[q_proj], base.state_dict()[q_proj])


def test_tied_embeddings_are_merged_once_and_stay_tied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = llama(tmp_path / "base", tied=True)
    assert "lm_head.weight" not in read_header(tmp_path / "base" / "model.safetensors").tensors
    config = lora(target_modules=["embed_tokens", "q_proj", "v_proj"])
    expected = peft_merged(tmp_path / "adapter", base, config)
    merged(capsys, tmp_path / "base", tmp_path / "adapter", tmp_path / "out.safetensors")
    found = read_weights(tmp_path / "out.safetensors")
    assert "lm_head.weight" not in found  # written once, tied by the config as before
    embed = "model.embed_tokens.weight"
    assert not torch.equal(found[embed], base.state_dict()[embed])
    assert torch.equal(found[embed], expected[embed])
    assert torch.equal(expected["lm_head.weight"], expected[embed])
    assert_bitwise(found, {k: v for k, v in expected.items() if k != "lm_head.weight"})


def test_an_adapted_lm_head_tied_to_the_embeddings_updates_the_one_tensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = llama(tmp_path / "base", tied=True)
    expected = peft_merged(tmp_path / "adapter", base, lora(target_modules=["lm_head"]))
    merged(capsys, tmp_path / "base", tmp_path / "adapter", tmp_path / "out.pt")
    found = read_weights(tmp_path / "out.pt")
    assert "lm_head.weight" not in found
    embed = "model.embed_tokens.weight"
    assert torch.equal(found[embed], expected["lm_head.weight"])
    assert not torch.equal(found[embed], base.state_dict()[embed])


def test_a_torch_save_base_with_shared_storage_is_written_once_and_stays_shared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(3)
    base = Base()
    base.head.weight = nn.Parameter(torch.randn(2, 4))
    state = dict(base.state_dict())
    state["alias.weight"] = state["fc1.weight"]  # two keys, one storage
    torch.save(state, tmp_path / "base.pt")
    config = lora_config(target_modules=["fc1", "fc2", "conv", "embed"])
    expected = peft_merged(tmp_path / "adapter", base, config)
    merged(capsys, tmp_path / "base.pt", tmp_path / "adapter", tmp_path / "out.safetensors")
    header = read_header(tmp_path / "out.safetensors")
    assert header.aliases == {"alias.weight": "fc1.weight"}
    found = read_weights(tmp_path / "out.safetensors")
    assert torch.equal(found["alias.weight"], expected["fc1.weight"])
    del found["alias.weight"]
    assert_bitwise(found, expected)  # embedding, convolution, linear and the saved head


@pytest.mark.parametrize("block", [None, 1 << 20])
def test_alexnet_with_lora_on_its_classifier_merges_as_peft_does(
    alexnet: nn.Module,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    block: int | None,
) -> None:
    if block is not None:  # 4096 x 9216 weights a block of 64 rows at a time
        monkeypatch.setattr(compute, "BLOCK_ELEMENTS", block)
    save_file(
        {k: v.contiguous() for k, v in alexnet.state_dict().items()},
        tmp_path / "alexnet.safetensors",
    )
    config = lora(target_modules=["classifier.1", "classifier.4"], r=8, lora_alpha=16)
    expected = peft_merged(tmp_path / "adapter", alexnet, config)
    out = tmp_path / "merged.pt"
    printed = merged(capsys, tmp_path / "alexnet.safetensors", tmp_path / "adapter", out)
    assert "2 weights updated, 16 tensors" in printed
    assert_bitwise(read_weights(out), expected)


def test_dora_is_refused_in_one_line_and_nothing_is_written(
    llama_folder: tuple[Path, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, base = llama_folder
    peft_merged(tmp_path / "adapter", base, lora(use_dora=True))
    out = tmp_path / "out.safetensors"
    capsys.readouterr()
    assert main([str(folder), "--merge", str(tmp_path / "adapter"), "--output", str(out)]) == 2
    line = the_error_line(capsys.readouterr())
    assert "is a DoRA adapter: merging DoRA's magnitudes is not supported" in line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"peft_type": "IA3"}, "is a IA3 adapter: only LoRA is merged"),
        ({"r": "four"}, "r is 'four', not a positive whole number"),
    ],
)
def test_an_adapter_config_that_cannot_be_merged_is_one_line(
    llama_folder: tuple[Path, nn.Module],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, object],
    message: str,
) -> None:
    folder, base = llama_folder
    peft_merged(tmp_path / "adapter", base, lora())
    set_config(tmp_path / "adapter", **change)
    out = tmp_path / "out.pt"
    capsys.readouterr()
    assert main([str(folder), "--merge", str(tmp_path / "adapter"), "--output", str(out)]) == 2
    assert message in the_error_line(capsys.readouterr())
    assert not out.exists()


def test_an_adapter_for_another_model_is_refused(
    llama_folder: tuple[Path, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = llama_folder
    torch.manual_seed(3)
    peft_merged(tmp_path / "adapter", Base(), lora_config(target_modules=["fc1"]))
    args = [str(folder), "--merge", str(tmp_path / "adapter"), "--output", str(tmp_path / "o.pt")]
    capsys.readouterr()
    assert main(args) == 2
    line = the_error_line(capsys.readouterr())
    assert "the adapter adapts 1 module(s) the base has no weight for: fc1" in line


def test_a_shape_that_does_not_fit_is_refused(
    llama_folder: tuple[Path, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, base = llama_folder
    peft_merged(tmp_path / "adapter", base, lora())
    config = json.loads((folder / "config.json").read_text())
    other = tmp_path / "other"
    llama(other)
    weights = read_weights(other / "model.safetensors")
    weights["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(8, 16)
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    assert config["hidden_size"] == 16
    args = [str(other), "--merge", str(tmp_path / "adapter"), "--output", str(tmp_path / "o.pt")]
    capsys.readouterr()
    assert main(args) == 2
    assert "q_proj: A (4, 16) and B (16, 4) do not fit the base's weight (8, 16)" in (
        the_error_line(capsys.readouterr())
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--merge needs --output OUT"),
        (["--output", "o.pt", "--print"], "leave out --print"),
    ],
)
def test_merge_flags_that_do_not_go_together(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["base", "--merge", "adapter", *extra])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_missing_adapter_folder_is_one_line(
    llama_folder: tuple[Path, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = llama_folder
    args = [str(folder), "--merge", str(tmp_path / "none"), "--output", str(tmp_path / "o.pt")]
    assert main(args) == 2
    assert "not a PEFT adapter folder" in the_error_line(capsys.readouterr())


def test_a_folder_output_is_a_hugging_face_folder_with_config_and_tokenizer(
    llama_folder: tuple[Path, nn.Module], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, base = llama_folder
    (folder / "tokenizer.json").write_text('{"version": "1.0"}')
    expected = peft_merged(tmp_path / "adapter", base, lora())
    out = tmp_path / "merged"
    printed = merged(capsys, folder, tmp_path / "adapter", out, "--max-shard-size", "5GB")
    assert f"merged into {out}: 4 weights updated, 21 tensors" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert (out / "tokenizer.json").read_text() == '{"version": "1.0"}'
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (folder / "config.json").read_text()
    )
    assert_bitwise(read_weights(out / "model.safetensors"), expected)
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(out))
    assert_bitwise({k: v.detach() for k, v in loaded.state_dict().items()}, expected)


def test_a_sharded_base_merges_shard_by_shard_into_shards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = llama(tmp_path / "base", max_shard_size="8KB")
    shards = sorted((tmp_path / "base").glob("model-*.safetensors"))
    assert len(shards) > 2
    expected = peft_merged(tmp_path / "adapter", base, lora())
    merged(capsys, tmp_path / "base", tmp_path / "adapter", tmp_path / "out")
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    names = sorted(set(index["weight_map"].values()))
    assert len(names) > 2  # no larger than half the base's largest shard
    found: dict[str, torch.Tensor] = {}
    for name in names:
        found.update(read_weights(tmp_path / "out" / name))
    assert_bitwise(found, expected)
    merged(capsys, tmp_path / "base", tmp_path / "adapter", tmp_path / "out.safetensors")
    assert_bitwise(read_weights(tmp_path / "out.safetensors"), expected)


def test_an_output_that_would_replace_the_base_or_the_adapter_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = llama(tmp_path / "base")
    peft_merged(tmp_path / "adapter", base, lora())
    shard = tmp_path / "base" / "model.safetensors"
    files = sorted(tmp_path.rglob("*"))
    before = {path: path.read_bytes() for path in files if path.is_file()}
    capsys.readouterr()  # what building the fixtures printed
    for out, problem in [
        (tmp_path / "base", "it is the base this reads"),
        (tmp_path / "adapter", "it is the adapter this reads"),
        (tmp_path, "it holds the base this reads"),
        (shard, "it is part of the base this reads"),
    ]:
        args = [str(tmp_path / "base"), "--merge", str(tmp_path / "adapter"), "--output", str(out)]
        assert main(args) == 2
        line = the_error_line(capsys.readouterr())
        assert f"cannot write {out}:" in line and problem in line and "another path" in line
    assert sorted(tmp_path.rglob("*")) == files
    assert {path: path.read_bytes() for path in files if path.is_file()} == before
