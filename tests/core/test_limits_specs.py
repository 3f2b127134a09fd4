"""Hostile specs and configs: what they would build is known, and refused, before it is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from modelbrowse.core.edits import spec_size
from modelbrowse.core.edits.base import EditError
from modelbrowse.core.edits.modules import Replace
from modelbrowse.core.edits.specs import SpecError, build_module
from modelbrowse.core.sources import build_budget
from modelbrowse.core.sources.build_budget import BuildLimitError, cancellable, counted
from tests.limits_support import within


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "nn.TransformerEncoder(nn.TransformerEncoderLayer(1, 1, 1), 10**5)",
            "would create 100,000 layers; at most 10,000",
        ),
        (
            "nn.TransformerEncoder(nn.TransformerEncoderLayer(1, 1, 1), 10000)",
            "would create 100,002 modules; at most 100,000",
        ),
        ("nn.RNN(1, 1, 10**7)", "would create 10,000,000 layers; at most 1,000"),
        ("nn.LSTM(4, 4, num_layers=5000)", "would create 5,000 layers; at most 1,000"),
        (
            "nn.Transformer(num_decoder_layers=10**6)",
            "would create 1,000,000 layers; at most 10,000",
        ),
        (
            "nn.TransformerEncoder(nn.TransformerEncoderLayer(512, 8), 9000)",
            "would take 105.7 GiB, more than the 4.0 GiB limit",
        ),
        (
            "nn.Sequential(nn.ReLU(), nn.TransformerDecoder(nn.TransformerDecoder("
            "nn.TransformerDecoderLayer(1, 1, 1), 100), 100))",
            "would create 140,202 modules; at most 100,000",
        ),
    ],
)
def test_a_spec_that_repeats_too_much_is_refused_before_it_is_built(
    spec: str, message: str
) -> None:
    with within(60), pytest.raises(SpecError) as caught:
        build_module(spec, device="meta", max_bytes=4 * 1024**3)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_counts_are_extrapolated_exactly() -> None:
    spec = "nn.Transformer(16, 2, 3, 4, 32)"
    built = build_module(spec, device="meta")
    size = spec_size.footprint_of(built)
    assert size.modules == sum(1 for _ in built.modules())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spec_size, "MAX_SPEC_MODULES", size.modules - 1)
        with pytest.raises(SpecError, match=f"would create {size.modules:,} modules"):
            build_module(spec, device="meta")


def test_a_spec_in_a_recipe_is_refused_the_same_way() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    edit = Replace("0", "nn.RNN(1, 1, 10**7)")
    with within(60), pytest.raises((SpecError, EditError), match="at most 1,000"):
        edit.apply(model)
    assert isinstance(model[0], nn.Linear)


def test_any_other_build_stops_at_the_module_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spec_size, "MAX_SPEC_MODULES", 10)
    monkeypatch.setattr("modelbrowse.core.edits.specs.MAX_SPEC_MODULES", 10)
    with pytest.raises(SpecError, match="would create more than 10 modules"):
        build_module("nn.Sequential(" + ", ".join(["nn.ReLU()"] * 20) + ")", device="meta")
    built = build_module("nn.Sequential(nn.ReLU(), nn.ReLU())", device="meta")
    assert isinstance(built, nn.Sequential) and len(built) == 2


def test_a_cancelled_build_stops_at_its_next_module() -> None:
    spec = "nn.Sequential(" + ", ".join(["nn.Linear(2, 2)"] * 100) + ")"
    with cancellable(lambda: True), pytest.raises(SpecError, match="cancelled"):
        build_module(spec, device="meta")
    built = build_module(spec, device="meta")
    assert isinstance(built, nn.Sequential) and len(built) == 100  # the flag was this block's


def test_a_budget_counts_its_own_thread_only() -> None:
    import threading

    built: list[nn.Sequential] = []
    with counted("x", 3, 3):
        worker = threading.Thread(target=lambda: built.append(nn.Sequential(*[nn.ReLU()] * 9)))
        worker.start()
        worker.join()
        with pytest.raises(BuildLimitError, match="more than 3 tensors"):
            nn.Sequential(nn.Linear(1, 1), nn.Linear(1, 1))
    assert len(built[0]) == 9


# --- a config.json ---------------------------------------------------------------------------


def tiny_llama(folder: Path, **fields: int) -> Path:
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=8,
        intermediate_size=8,
        num_attention_heads=1,
        num_key_value_heads=1,
        vocab_size=16,
        **fields,
    )
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(folder)
    return folder / "config.json"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"num_hidden_layers": 1_000_000}, "num_hidden_layers is 1,000,000; at most 1,000 layers"),
        ({"n_routed_experts": 10**9}, "n_routed_experts is 1,000,000,000; at most 10,000 experts"),
    ],
)
def test_a_config_with_too_many_layers_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: dict[str, int], message: str
) -> None:
    from modelbrowse.tui.cli import main

    config = tiny_llama(tmp_path, num_hidden_layers=2)
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, **fields}))
    with within(120):
        status = main([str(config), "--meta", "--print"])
    err = capsys.readouterr().err
    assert status == 2
    assert err == f"modelbrowse: error: {config}: {message}\n"


def test_a_config_build_stops_at_its_module_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelbrowse.tui.cli import main

    config = tiny_llama(tmp_path, num_hidden_layers=40)
    monkeypatch.setattr(build_budget, "MAX_CONFIG_MODULES", 100)
    monkeypatch.setattr("modelbrowse.core.sources.hf_models.MAX_CONFIG_MODULES", 100)
    with within(120):
        status = main([str(config), "--meta", "--print"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.endswith("would create more than 100 modules\n") and err.count("\n") == 1
    monkeypatch.undo()
    assert main([str(config), "--meta", "--print", "--depth", "1"]) == 0
