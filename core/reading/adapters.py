"""PEFT adapter folders: `adapter_config.json` read and checked, and where the weights are.

The weights themselves (`adapter_model.safetensors`, or a torch.save `adapter_model.bin`) are
read by the readers of those formats; here only the config is decoded, with each field's type
checked, so that a hostile config is one line and never a surprise later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.structured_text import read_json

CONFIG_NAME = "adapter_config.json"
WEIGHT_NAMES = ("adapter_model.safetensors", "adapter_model.bin")
# PEFT's defaults for LoRA, where a config leaves a field out.
DEFAULT_RANK = 8
DEFAULT_ALPHA = 8.0
# At most this many names in a list, and characters in a name.
MAX_NAMES = 100_000
MAX_NAME = 1000


@dataclass(frozen=True)
class AdapterConfig:
    """The fields of `adapter_config.json` the app shows and uses."""

    peft_type: str
    r: int = DEFAULT_RANK
    lora_alpha: float = DEFAULT_ALPHA
    lora_dropout: float | None = None
    # A list of names, or one regular expression (PEFT's `re.fullmatch`), or None.
    target_modules: tuple[str, ...] | str | None = None
    modules_to_save: tuple[str, ...] = ()
    base_model: str | None = None
    use_rslora: bool = False
    use_dora: bool = False
    # The base layer stores its weight transposed (GPT-2's Conv1D): B @ A is transposed.
    fan_in_fan_out: bool = False
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    rank_pattern: dict[str, int] = field(default_factory=dict)
    task_type: str | None = None
    bias: str | None = None


def adapter_weights(folder: Path) -> Path | None:
    """The weight file of an adapter folder (one with `adapter_config.json`), else None."""
    if not (folder / CONFIG_NAME).is_file():
        return None
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def read_adapter_config(folder: Path, limits: Limits = DEFAULT_LIMITS) -> AdapterConfig:
    """The folder's `adapter_config.json`, each field checked; a ReadError line otherwise."""
    path = folder / CONFIG_NAME
    data = read_json(path, "an adapter config", limits)
    where = str(path)
    if not isinstance(data, dict):
        raise ReadError(f"{where} is not a JSON object")
    peft_type = _text(data.get("peft_type"), where, "peft_type")
    if peft_type is None:
        raise ReadError(f"{where} names no peft_type (not a PEFT adapter config)")
    r = data.get("r", DEFAULT_RANK)
    if not isinstance(r, int) or isinstance(r, bool) or not 0 < r < 1 << 31:
        raise ReadError(f"{where}: r is {_shown(r)}, not a positive whole number")
    return AdapterConfig(
        peft_type=peft_type,
        r=r,
        lora_alpha=_number(data.get("lora_alpha", DEFAULT_ALPHA), where, "lora_alpha"),
        lora_dropout=_optional_number(data.get("lora_dropout"), where, "lora_dropout"),
        target_modules=_names_or_pattern(data.get("target_modules"), where, "target_modules"),
        modules_to_save=_names(data.get("modules_to_save"), where, "modules_to_save"),
        base_model=_text(data.get("base_model_name_or_path"), where, "base_model_name_or_path"),
        use_rslora=_flag(data.get("use_rslora"), where, "use_rslora"),
        use_dora=_flag(data.get("use_dora"), where, "use_dora"),
        fan_in_fan_out=_flag(data.get("fan_in_fan_out"), where, "fan_in_fan_out"),
        alpha_pattern={
            k: _number(v, where, f"alpha_pattern[{k!r}]")
            for k, v in _mapping(data.get("alpha_pattern"), where, "alpha_pattern").items()
        },
        rank_pattern={
            k: int(_number(v, where, f"rank_pattern[{k!r}]"))
            for k, v in _mapping(data.get("rank_pattern"), where, "rank_pattern").items()
        },
        task_type=_text(data.get("task_type"), where, "task_type"),
        bias=_text(data.get("bias"), where, "bias"),
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _text(value: Any, where: str, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_NAME:
        raise ReadError(f"{where}: {name} is {_shown(value)}, not a name")
    return value


def _number(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ReadError(f"{where}: {name} is {_shown(value)}, not a number")
    if abs(value) > 1e30:
        raise ReadError(f"{where}: {name} is {_shown(value)}, far too large")
    return float(value)


def _optional_number(value: Any, where: str, name: str) -> float | None:
    return None if value is None else _number(value, where, name)


def _flag(value: Any, where: str, name: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ReadError(f"{where}: {name} is {_shown(value)}, not true or false")
    return value


def _names(value: Any, where: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        raise ReadError(f"{where}: {name} is {_shown(value)}, not a list of names")
    if not all(isinstance(item, str) and len(item) <= MAX_NAME for item in value):
        raise ReadError(f"{where}: {name} holds {_shown(value)}, not only names")
    return tuple(value)


def _names_or_pattern(value: Any, where: str, name: str) -> tuple[str, ...] | str | None:
    if value is None or isinstance(value, str):
        return _text(value, where, name)
    return _names(value, where, name)


def _mapping(value: Any, where: str, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_NAMES:
        raise ReadError(f"{where}: {name} is {_shown(value)}, not a mapping of names")
    for key in value:
        _text(key, where, name)
    return value
