"""Hostile PEFT adapter configs: each field's type is checked, and every problem is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from modelbrowse.tui.cli import main
from tests.adapter_support import Base, lora_config, save_adapter
from tests.e2e.test_cli_checkpoints import the_error_line


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The weight file of an adapter peft saved, for folders whose config a test writes."""
    folder = tmp_path_factory.mktemp("adapter") / "lora"
    torch.manual_seed(0)
    save_adapter(folder, Base(), lora_config())
    return (folder / "adapter_model.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"peft_type": "LORA", "r": "eight"}, "r is 'eight', not a positive whole number"),
        ({"peft_type": "LORA", "r": -1}, "r is -1, not a positive whole number"),
        ({"r": 4}, "names no peft_type (not a PEFT adapter config)"),
        ({"peft_type": "LORA", "lora_alpha": True}, "lora_alpha is True, not a number"),
        ({"peft_type": "LORA", "target_modules": [1, 2]}, "target_modules holds [1, 2]"),
        ({"peft_type": "LORA", "use_dora": "yes"}, "use_dora is 'yes', not true or false"),
        ([1, 2], "is not a JSON object"),
    ],
)
def test_a_bad_config_is_one_line(
    weights: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    config: object,
    words: str,
) -> None:
    (tmp_path / "adapter_model.safetensors").write_bytes(weights)
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    assert main([str(tmp_path), "--print"]) == 2
    line = the_error_line(capsys.readouterr())
    assert "adapter_config.json" in line
    assert words in line


def test_a_deeply_nested_or_huge_config_is_one_line(
    weights: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "adapter_model.safetensors").write_bytes(weights)
    (tmp_path / "adapter_config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main([str(tmp_path), "--print"]) == 2
    assert "is nested too deeply" in the_error_line(capsys.readouterr())
