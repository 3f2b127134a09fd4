"""A weight file's structure read without torch: the keys' tree shown before torch is imported.

`read_structure` gives, for a safetensors file, a torch state_dict (zip or legacy) or a Hugging
Face folder of safetensors shards, the keys and tensor records the full open will show, in its
order and under its names (wrapper prefixes stripped, `--key`, `--strip-prefix`), with the
information rows it can tell from the bytes alone. It answers None for anything whose tree the
full open would draw differently (an architecture, a comparison, a recipe, `--meta`, a trusted
pickle, TorchScript, a distributed checkpoint, a folder transformers builds) or that it would
refuse: the app then waits for the full open, whose message is the one a user sees.

This mirrors what `core.checkpoints` and `core.checkpoint_folders` decide, torch-free.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.file_kinds import FileKind, sniff
from modelbrowse.core.reading.nested import flatten
from modelbrowse.core.reading.records import TensorRecord
from modelbrowse.core.reading.safetensors_header import read_header
from modelbrowse.core.reading.structured_text import read_json
from modelbrowse.core.reading.torch_files import read_torch_legacy, read_torch_zip
from modelbrowse.core.reading.torch_pickles import Unread

# As core.checkpoints has them.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".tar", ".pkl")
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


@dataclass
class Structure:
    """What the tree is drawn from: shown key -> record, in order, and the root's rows."""

    format: str
    tensors: dict[str, TensorRecord] = field(default_factory=dict)
    info: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def rows(self) -> list[tuple[str, str]]:
        """The root's information rows, as the checkpoint source lists them."""
        return [
            ("format", self.format),
            *self.info,
            ("tensor kinds", "parameter or buffer guessed from the names"),
        ]


class NotShown(Exception):
    """The preview cannot show this source exactly as the full open will."""


def read_structure(
    spec: str,
    *,
    key: str | None = None,
    keep_prefix: bool = False,
    strip_prefix: str | None = None,
    keys_only: bool = False,
    full_open_only: bool = False,
) -> Structure | None:
    """The structure of a weight file or folder, or None when only the full open can show it
    (`full_open_only`: the command line asked for an architecture, a comparison, a recipe,
    --meta, --trust-pickle, --device, --kw or --weights)."""
    if full_open_only:
        return None
    try:
        return _read(spec.strip(), key, keep_prefix, strip_prefix, keys_only)
    except (NotShown, ReadError, OSError, RecursionError, MemoryError):
        return None


def _read(
    spec: str, key: str | None, keep_prefix: bool, strip_prefix: str | None, keys_only: bool
) -> Structure:
    if not spec or spec.startswith("hf:"):
        raise NotShown
    path = Path(spec).expanduser()
    if not path.exists():
        raise NotShown
    config = _config_file(path)
    if config is not None and (path.is_file() or not _holds_weights(path)):
        raise NotShown  # a config alone: an architecture
    structure = _read_folder(path, key, keys_only) if path.is_dir() else _read_file(path, key)
    if not keep_prefix:
        _strip_wrapper_prefix(structure)
    else:
        _note_wrapper_prefix(structure)
    if strip_prefix:
        kept = {k: k[len(strip_prefix) :] for k in structure.tensors if k.startswith(strip_prefix)}
        if not kept:
            raise NotShown
        dropped = len(structure.tensors) - len(kept)
        structure.tensors = {new: structure.tensors[old] for old, new in kept.items()}
        note = f"; {dropped} other keys left out" if dropped else ""
        structure.info.append(("key prefix", f"{strip_prefix!r} stripped (--strip-prefix){note}"))
    if not structure.tensors:
        raise NotShown
    return structure


# --- folders -----------------------------------------------------------------------------------


def _read_folder(path: Path, key: str | None, keys_only: bool) -> Structure:
    if (path / ".metadata").is_file():
        raise NotShown  # a distributed checkpoint
    weights = _hf_weight_files(path)
    if not weights:
        candidates = [
            p for p in sorted(path.iterdir()) if p.name.lower().endswith(CHECKPOINT_SUFFIXES)
        ]
        candidates = [p for p in candidates if p.is_file()]
        if len(candidates) != 1:
            raise NotShown
        return _read_file(candidates[0], key)
    if key is not None or not all(sniff(f) is FileKind.SAFETENSORS for f in weights):
        raise NotShown
    structure = _read_safetensors(weights)
    structure.format = f"Hugging Face folder ({structure.format})"
    config = path / "config.json"
    if config.is_file():
        structure.info[:0] = _describe_hf_config(config)
        structure.files.append(config)
    if not keys_only and _config_file(path) is not None:
        if importlib.util.find_spec("transformers") is not None:
            raise NotShown  # transformers builds it: its classes, not the keys' groups
        structure.info.append(
            ("architecture", f"from the keys; {INSTALL_HINT} builds it from config.json")
        )
    return structure


def _config_file(path: Path) -> Path | None:
    """The config.json of a folder (or the file itself) when it names a transformers model."""
    config = path if path.is_file() else path / "config.json"
    if config.name != "config.json" or not config.is_file():
        return None
    try:
        data = read_json(config, "config.json")
    except ReadError:
        raise NotShown from None  # the full open reads it its own way
    return config if isinstance(data, dict) and "model_type" in data else None


def _holds_weights(folder: Path) -> bool:
    if (folder / ".metadata").is_file() or _hf_weight_files(folder):
        return True
    return any(p.name.lower().endswith(CHECKPOINT_SUFFIXES) for p in folder.iterdir())


def _hf_weight_files(folder: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = folder / index_name
        if index.is_file():
            data = read_json(index, "a weights index")
            weight_map = data.get("weight_map") if isinstance(data, dict) else None
            if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) for v in weight_map.values()
            ):
                raise NotShown
            names = list(dict.fromkeys(weight_map.values()))
            if any(not n or "/" in n or "\\" in n or n in (".", "..") for n in names):
                raise NotShown
            files = [folder / name for name in names]
            if not all(f.is_file() for f in files):
                raise NotShown
            return files
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return [folder / name]
    if (folder / "config.json").is_file():
        return sorted(folder.glob("*.safetensors"))
    return []


def _describe_hf_config(config: Path) -> list[tuple[str, str]]:
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
            rows.append((f"config {name}", _short(text)))
    return rows


# --- files -------------------------------------------------------------------------------------


def _read_file(path: Path, key: str | None) -> Structure:
    kind = sniff(path)
    if kind is FileKind.SAFETENSORS:
        if key is not None:
            raise NotShown
        return _read_safetensors([path])
    if kind is FileKind.TORCH_ZIP:
        contents = read_torch_zip(path)
    elif kind is FileKind.TORCH_LEGACY:
        contents = read_torch_legacy(path)
    else:
        raise NotShown  # TorchScript, a plain pickle, anything else: the full open decides
    structure = Structure(
        "torch (legacy format)" if kind is FileKind.TORCH_LEGACY else "torch", files=[path]
    )
    _take_weights(structure, contents.value, key, str(path))
    return structure


def _read_safetensors(paths: list[Path]) -> Structure:
    structure = Structure("safetensors", files=list(paths))
    for path in paths:
        header = read_header(path)
        structure.tensors.update(header.tensors)
        for alias, key in header.aliases.items():
            if alias not in structure.tensors:
                structure.tensors[alias] = header.tensors[key]
        rows = [(f"metadata {name}", value) for name, value in header.metadata.items()]
        for row in rows + header.info:
            if row not in structure.info:
                structure.info.append(row)
    return structure


def _take_weights(structure: Structure, loaded: Any, key: str | None, where: str) -> None:
    """Where a training checkpoint keeps its weights, as the full open finds them."""
    if not isinstance(loaded, Mapping):
        raise NotShown
    if key is not None:
        if _all_tensors(loaded, where):
            raise NotShown
        weights = _lookup(loaded, key, where)
        if weights is None:
            raise NotShown
        structure.info.insert(0, ("weights from", f"[{key!r}] (--key)"))
    elif _all_tensors(loaded, where):
        weights = loaded
    else:
        found = _find_weights(loaded, where)
        if found is None:
            raise NotShown
        found_key, weights = found
        others = [
            str(k)
            for k, v in loaded.items()
            if k != found_key and isinstance(v, Mapping) and v and _all_tensors(v, where)
        ]
        note = f" (also there: {', '.join(others)}; choose with --key)" if others else ""
        structure.info.insert(0, ("weights from", f"[{found_key!r}]{note}"))
    entries = list(flatten(weights, where))
    structure.tensors = {k: v for k, v in entries if isinstance(v, TensorRecord)}
    unread = [k for k, v in entries if isinstance(v, Unread)]
    if unread:
        kinds = sorted({v.what for _, v in entries if isinstance(v, Unread)})
        structure.info.append(("not loaded", _short(f"{', '.join(kinds)}: {', '.join(unread)}")))
    skipped = [k for k, v in entries if not isinstance(v, (TensorRecord, Unread))]
    if skipped:
        structure.info.append(("non-tensor entries", _short(", ".join(skipped))))


def _leaves(mapping: Mapping[Any, Any], where: str) -> Iterator[Any]:
    return (v for _, v in flatten(mapping, where))


def _all_tensors(mapping: Mapping[Any, Any], where: str) -> bool:
    return all(isinstance(v, (TensorRecord, Unread)) for v in _leaves(mapping, where))


def _has_tensors(mapping: Mapping[Any, Any], where: str) -> bool:
    return any(isinstance(v, TensorRecord) for v in _leaves(mapping, where))


def _lookup(loaded: Mapping[Any, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value: Any = loaded
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, Mapping) and _has_tensors(value, where) else None


def _is_optimizer_state(value: Any) -> bool:
    return isinstance(value, Mapping) and "param_groups" in value and "state" in value


def _find_weights(loaded: Mapping[Any, Any], where: str) -> tuple[str, Mapping[str, Any]] | None:
    for key in WEIGHTS_KEYS:
        value = loaded.get(key)
        if isinstance(value, Mapping) and _has_tensors(value, where):
            return key, value
    candidates = [
        (
            sum(v.numel for v in _leaves(value, where) if isinstance(v, TensorRecord)),
            str(key),
            value,
        )
        for key, value in loaded.items()
        if isinstance(value, Mapping)
        and _has_tensors(value, where)
        and not _is_optimizer_state(value)
    ]
    if not candidates:
        return None
    _, key, value = max(candidates, key=lambda c: c[0])
    return key, value


# --- key prefixes ------------------------------------------------------------------------------


def _strip_wrapper_prefix(structure: Structure) -> None:
    for prefix in WRAPPER_PREFIXES:
        keys = list(structure.tensors)
        if not keys or not all(k.startswith(prefix) for k in keys):
            continue
        structure.tensors = {k[len(prefix) :]: v for k, v in structure.tensors.items()}
        structure.info.append(
            ("key prefix", f"{prefix!r} stripped from every key (--keep-prefix keeps it)")
        )


def _note_wrapper_prefix(structure: Structure) -> None:
    for prefix in WRAPPER_PREFIXES:
        keys = list(structure.tensors)
        if keys and all(k.startswith(prefix) for k in keys):
            structure.info.append(("key prefix", f"every key starts with {prefix!r} (kept)"))
            return


def _short(text: str) -> str:
    return text if len(text) <= INFO_VALUE_LIMIT else text[: INFO_VALUE_LIMIT - 1] + "…"
