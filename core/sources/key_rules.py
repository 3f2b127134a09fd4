"""Where a checkpoint's weights are and what its keys are called: the rules, torch-free.

One copy of each rule, used by the full open (`core.checkpoints`, `core.checkpoint_folders`,
with torch) and by the tree read before torch (`core.structure`): the keys of a training
checkpoint's weights, wrapper prefixes, `--key` and `--strip-prefix`, a Hugging Face folder's
weight files and config. The rules work on plain data: the reading layer's records, or (for a
trusted pickle) torch tensors, told apart by the `tensor_types` the caller passes. A refusal is a
`SourceError` of one line, the message a user sees.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbrowse.core.errors import SourceError
from modelbrowse.core.reading.limits import ReadError
from modelbrowse.core.reading.nested import flatten
from modelbrowse.core.reading.records import TensorRecord
from modelbrowse.core.reading.structured_text import read_json
from modelbrowse.core.reading.torch_pickles import Unread
from modelbrowse.core.units import printable

CHECKPOINT_SUFFIXES = (
    ".pt",
    ".pth",
    ".bin",
    ".ckpt",
    ".safetensors",
    ".tar",
    ".pkl",
    ".gguf",
    ".onnx",
)
# Where training scripts keep the weights, most specific first.
WEIGHTS_KEYS = (
    "state_dict",
    "model_state_dict",
    "model_state",
    "model",
    "module",
    "net",
    "network",
    "weights",
    "params",
    "ema",
    "model_ema",
    "state_dict_ema",
    "ema_state_dict",
)
# Prefixes that wrappers add to every key: DataParallel/DDP, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
HF_CONFIG_FIELDS = (
    "model_type",
    "architectures",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "torch_dtype",
    "tie_word_embeddings",
)
INFO_VALUE_LIMIT = 120
INSTALL_HINT = "pip install 'modelbrowse[hf]'"
CUSTOM_CODE = "config.json names code of its own (auto_map), which modelbrowse never runs"
QUANTIZED_ARCHITECTURE = "from the keys: quantized weights are shown as stored, one per layer"

Row = tuple[str, str]
RECORDS: tuple[type, ...] = (TensorRecord,)


def short(text: str) -> str:
    """A row's value cut to INFO_VALUE_LIMIT characters."""
    return text if len(text) <= INFO_VALUE_LIMIT else text[: INFO_VALUE_LIMIT - 1] + "…"


def is_optimizer_state(value: Any) -> bool:
    return isinstance(value, Mapping) and "param_groups" in value and "state" in value


# --- Hugging Face folders ----------------------------------------------------------------------


def transformers_installed() -> bool:
    return importlib.util.find_spec("transformers") is not None


def config_file(path: Path) -> Path | None:
    """The `config.json` of a folder (or the file itself), if it names a transformers model."""
    config = path if path.is_file() else path / "config.json"
    if config.name != "config.json" or not config.is_file():
        return None
    try:
        data = read_json(config, "config.json")
    except ReadError:
        return None
    return config if isinstance(data, dict) and "model_type" in data else None


def custom_code(config: Path) -> bool:
    """Whether `config` names Python code of its own (`auto_map`): code that is never run."""
    try:
        data = read_json(config, "config.json")
    except ReadError:
        return False
    return isinstance(data, dict) and "auto_map" in data


def holds_weights(folder: Path) -> bool:
    """Whether a folder holds weights of some kind (else its config alone is an architecture)."""
    if (folder / ".metadata").is_file() or hf_weight_files(folder):
        return True
    return any(p.name.lower().endswith(CHECKPOINT_SUFFIXES) for p in folder.iterdir())


def hf_weight_files(folder: Path) -> list[Path]:
    """The weight files of a Hugging Face folder, shards in index order; [] when there are none."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            return _shards_from_index(index)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    if (folder / "config.json").is_file():
        return sorted(folder.glob("*.safetensors"))
    return []


def _shards_from_index(index: Path) -> list[Path]:
    data = read_json(index, "a weights index")
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise SourceError(f"{index} is not a weights index (no weight_map)")
    names = list(dict.fromkeys(weight_map.values()))
    outside = [n for n in names if not n or "/" in n or "\\" in n or n in (".", "..")]
    if outside:
        raise SourceError(
            f"{index.name} names a shard outside its folder ({printable(outside[0], 80)!r})"
        )
    files = [index.parent / name for name in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise SourceError(f"{index.name} names shards that are missing: {', '.join(missing[:3])}")
    return files


def describe_hf_config(config: Path) -> list[Row]:
    """The config's main fields, one row each."""
    try:
        data: Any = read_json(config, "config.json")
    except ReadError:
        return [("config.json", "unreadable")]
    if not isinstance(data, dict):
        return [("config.json", "not a JSON object")]
    rows = []
    for name in HF_CONFIG_FIELDS:
        if name in data:
            value = data[name]
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            rows.append((f"config {name}", short(text)))
    return rows


# --- training checkpoints: where are the weights? ---------------------------------------------


@dataclass
class Weights:
    """The weights of a loaded checkpoint: its tensors by flat key and what the root shows."""

    tensors: dict[str, Any]  # flat key -> a record (or a trusted pickle's tensor)
    rest: dict[Any, Any]  # the entries beside the weights (epoch, optimizer, ...)
    first_rows: list[Row] = field(default_factory=list)  # shown before everything else
    rows: list[Row] = field(default_factory=list)  # entries not loaded or not tensors


def take_weights(
    loaded: Any, key: str | None, where: str, tensor_types: tuple[type, ...] = RECORDS
) -> Weights:
    """The weights of a torch.save file's contents: all of it, `--key`'s entry, or the entry
    training scripts keep them in; a SourceError when there are none."""
    if not isinstance(loaded, Mapping):
        name = "Tensor" if isinstance(loaded, TensorRecord) else type(loaded).__name__
        raise SourceError(f"{where} holds a {name}, not a state_dict or a checkpoint dict")
    tensors_or_unread = (*tensor_types, Unread)
    if key is not None and _all_tensors(loaded, where, tensors_or_unread):
        raise SourceError(
            f"--key {key!r}: {where} is a plain state_dict with no entries to choose "
            "(--strip-prefix keeps the keys under a prefix)"
        )
    first: list[Row] = []
    if key is not None:
        weights = _lookup(loaded, key, where, tensor_types)
        if weights is None:
            raise SourceError(
                f"--key {key!r}: {where} has no such entry "
                f"(it has: {', '.join(map(str, list(loaded)[:12]))})"
            )
        rest = {k: v for k, v in loaded.items() if k != key.split(".")[0]}
        first.append(("weights from", f"[{key!r}] (--key)"))
    elif _all_tensors(loaded, where, tensors_or_unread):
        weights, rest = loaded, {}
    else:
        found = _find_weights(loaded, where, tensor_types)
        if found is None:
            raise SourceError(
                f"{where} holds a dict without a state_dict in it "
                f"(entries: {', '.join(map(str, list(loaded)[:12]))}); name one with --key"
            )
        found_key, weights = found
        rest = {k: v for k, v in loaded.items() if k != found_key}
        others = [
            str(k)
            for k, v in rest.items()
            if isinstance(v, Mapping) and v and _all_tensors(v, where, tensors_or_unread)
        ]
        note = f" (also there: {', '.join(others)}; choose with --key)" if others else ""
        first.append(("weights from", f"[{found_key!r}]{note}"))
    entries = list(flatten(weights, where))
    rows: list[Row] = []
    unread = [k for k, v in entries if isinstance(v, Unread)]
    if unread:
        kinds = sorted({v.what for _, v in entries if isinstance(v, Unread)})
        rows.append(("not loaded", short(f"{', '.join(kinds)}: {', '.join(unread)}")))
    skipped = [k for k, v in entries if not isinstance(v, tensors_or_unread)]
    if skipped:
        rows.append(("non-tensor entries", short(", ".join(skipped))))
    tensors = {k: v for k, v in entries if isinstance(v, tensor_types)}
    return Weights(tensors, rest, first, rows)


def _leaves(mapping: Mapping[Any, Any], where: str) -> Iterator[Any]:
    return (v for _, v in flatten(mapping, where))


def _all_tensors(mapping: Mapping[Any, Any], where: str, types: tuple[type, ...]) -> bool:
    """Every leaf a tensor (or one the reader names but does not load: a quantized one)."""
    return all(isinstance(v, types) for v in _leaves(mapping, where))


def _has_tensors(mapping: Mapping[Any, Any], where: str, types: tuple[type, ...]) -> bool:
    return any(isinstance(v, types) for v in _leaves(mapping, where))


def _numel(value: Any) -> int:
    return value.numel if isinstance(value, TensorRecord) else int(value.numel())


def _lookup(
    loaded: Mapping[Any, Any], key: str, where: str, types: tuple[type, ...]
) -> Mapping[str, Any] | None:
    value: Any = loaded
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, Mapping) and _has_tensors(value, where, types) else None


def _find_weights(
    loaded: Mapping[Any, Any], where: str, types: tuple[type, ...]
) -> tuple[str, Mapping[str, Any]] | None:
    for key in WEIGHTS_KEYS:
        value = loaded.get(key)
        if isinstance(value, Mapping) and _has_tensors(value, where, types):
            return key, value
    # Otherwise the biggest dict of tensors that is not optimizer state.
    candidates = [
        (sum(_numel(v) for v in _leaves(value, where) if isinstance(v, types)), str(key), value)
        for key, value in loaded.items()
        if isinstance(value, Mapping)
        and _has_tensors(value, where, types)
        and not is_optimizer_state(value)
    ]
    if not candidates:
        return None
    _, key, value = max(candidates, key=lambda c: c[0])
    return key, value


# --- key prefixes ------------------------------------------------------------------------------


def wrapper_prefix(keys: list[str], keep: bool) -> tuple[dict[str, str] | None, list[Row]]:
    """Every key under `module.` or `_orig_mod.`: old -> new names with it stripped (None when
    nothing is renamed), and the rows that say so."""
    renamed: dict[str, str] | None = None
    rows: list[Row] = []
    for prefix in WRAPPER_PREFIXES:
        current = list(renamed.values()) if renamed is not None else keys
        if not current or not all(k.startswith(prefix) for k in current):
            continue
        if keep:
            rows.append(("key prefix", f"every key starts with {prefix!r} (kept)"))
            break
        cut = len(prefix)
        renamed = {old: new[cut:] for old, new in (renamed or {k: k for k in keys}).items()}
        rows.append(("key prefix", f"{prefix!r} stripped from every key (--keep-prefix keeps it)"))
    return renamed, rows


def strip_prefix(keys: list[str], prefix: str) -> tuple[dict[str, str], Row]:
    """`--strip-prefix backbone.`: old -> new for the keys under it (the others are dropped)."""
    kept = {k: k[len(prefix) :] for k in keys if k.startswith(prefix)}
    if not kept:
        first = ", ".join(keys[:3])
        raise SourceError(f"--strip-prefix {prefix!r}: no key starts with it (keys: {first}, ...)")
    dropped = len(keys) - len(kept)
    note = f"; {dropped} other keys left out" if dropped else ""
    return kept, ("key prefix", f"{prefix!r} stripped (--strip-prefix){note}")


def is_split_set(files: list[Path]) -> bool:
    """Whether `files` (sorted) are exactly the parts of one GGUF split set."""
    from modelbrowse.core.reading import ReadError
    from modelbrowse.core.reading.gguf import split_parts

    if len(files) < 2:
        return False
    try:
        return split_parts(files[0]) == files
    except ReadError:
        return False
