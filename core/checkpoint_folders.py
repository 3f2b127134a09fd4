"""Checkpoint folders: Hugging Face model folders, `torch.distributed.checkpoint`, single files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modelbrowse.core.checkpoints import (
    CHECKPOINT_SUFFIXES,
    WEIGHTS_KEYS,
    Checkpoint,
    CheckpointOptions,
    open_file,
)
from modelbrowse.core.errors import SourceError
from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.file_kinds import FileKind, sniff
from modelbrowse.core.reading.structured_text import read_json
from modelbrowse.core.safetensors_files import open_safetensors
from modelbrowse.core.training_info import short
from modelbrowse.core.units import printable

_HF_CONFIG_FIELDS = (
    "model_type",
    "architectures",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "torch_dtype",
    "tie_word_embeddings",
)


def open_folder(path: Path, options: CheckpointOptions, map_location: str) -> Checkpoint:
    if (path / ".metadata").is_file():
        return open_distributed(path, options, map_location)
    weights = hf_weight_files(path)
    if weights:
        checkpoint = _open_weight_files(weights, options, map_location)
        checkpoint.format = f"Hugging Face folder ({checkpoint.format})"
        config = path / "config.json"
        if config.is_file():
            checkpoint.info[:0] = describe_hf_config(config)
            checkpoint.files.append(config)
        return checkpoint
    candidates = sorted(
        p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(CHECKPOINT_SUFFIXES)
    )
    if len(candidates) == 1:
        return open_file(candidates[0], options, map_location)
    if candidates:
        names = ", ".join(p.name for p in candidates[:5]) + (", ..." if len(candidates) > 5 else "")
        raise SourceError(f"{path} holds several checkpoints ({names}); open one of them")
    raise SourceError(
        f"{path} is a directory without a model (no config.json with weights, "
        "no torch.distributed.checkpoint .metadata, no checkpoint file)"
    )


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


def _open_weight_files(
    files: list[Path], options: CheckpointOptions, map_location: str
) -> Checkpoint:
    # Each file is told by its bytes, whatever its name says.
    kinds = [sniff(f) for f in files]
    if all(kind is FileKind.SAFETENSORS for kind in kinds):
        return open_safetensors(files, map_location)
    if len(files) > 1 and FileKind.TORCHSCRIPT in kinds:
        shard = files[kinds.index(FileKind.TORCHSCRIPT)]
        raise SourceError(f"{shard} is a TorchScript archive, not a shard of weights")
    checkpoint = open_file(files[0], options, map_location)
    for shard in files[1:]:
        checkpoint.tensors.update(open_file(shard, options, map_location).tensors)
    checkpoint.files = list(files)
    return checkpoint


def describe_hf_config(config: Path) -> list[tuple[str, str]]:
    try:
        data: Any = read_json(config, "config.json")
    except ReadError:
        return [("config.json", "unreadable")]
    if not isinstance(data, dict):
        return [("config.json", "not a JSON object")]
    rows = []
    for name in _HF_CONFIG_FIELDS:
        if name in data:
            value = data[name]
            text = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            rows.append((f"config {name}", short(text)))
    return rows


# Top-level entries of a training checkpoint that hold no weights.
_TRAINING_STATE_WORDS = ("optim", "sched", "scaler", "rng", "step", "epoch", "metric", "args")


def _is_training_state(name: str) -> bool:
    return any(word in name.lower() for word in _TRAINING_STATE_WORDS)


# --- torch.distributed.checkpoint ------------------------------------------------------------


def open_distributed(path: Path, options: CheckpointOptions, map_location: str) -> Checkpoint:
    """Tree and shapes from `.metadata`, read as data (never unpickled); the values are read
    later from each chunk's torch.save archive, mapped from its shard file."""
    from modelbrowse.core.distributed_data import chunked_tensor
    from modelbrowse.core.reading.distributed import read_dcp_metadata
    from modelbrowse.core.tensor_mapping import FileMaps, torch_dtype

    metadata = read_dcp_metadata(path)
    checkpoint = Checkpoint(path, "torch.distributed.checkpoint", files=sorted(path.iterdir()))
    for key, entry in metadata.tensors.items():
        checkpoint.tensors[key] = torch.empty(
            entry.shape, dtype=torch_dtype(entry.dtype), device="meta"
        )
    if metadata.others:
        checkpoint.info.append(("non-tensor entries", ", ".join(metadata.others[:8])))
    maps = FileMaps()

    def load_data(keys: list[str]) -> dict[str, torch.Tensor]:
        return {
            key: chunked_tensor(path, key, metadata.tensors[key], maps, map_location)
            for key in keys
        }

    checkpoint.load_data = load_data
    _choose_group(checkpoint, options.key, [key.partition(".")[0] for key in metadata.others])
    return checkpoint


def _choose_group(checkpoint: Checkpoint, key: str | None, non_tensor: list[str]) -> None:
    """A distributed checkpoint of `model.*` and `optim.*` keys: the weights are `model.*`.

    A group is chosen only when everything beside it is training state (optimizer, step, ...):
    a plain state_dict whose first submodule is called `model` keeps all its keys.
    """
    tensor_groups = list(dict.fromkeys(k.partition(".")[0] for k in checkpoint.tensors))
    groups = list(dict.fromkeys(tensor_groups + non_tensor))
    if key is not None:
        if key not in groups:
            raise SourceError(
                f"--key {key!r}: {checkpoint.path} has no such entry "
                f"(it has: {', '.join(groups[:12])})"
            )
        chosen = key
    else:
        found = [g for g in WEIGHTS_KEYS if g in tensor_groups]
        if len(groups) < 2 or not found:
            return
        chosen = found[0]
        training_state = set(non_tensor) | {g for g in tensor_groups if _is_training_state(g)}
        if any(g != chosen and g not in training_state for g in groups):
            return
    prefix = chosen + "."
    checkpoint.rename({k: k[len(prefix) :] for k in checkpoint.tensors if k.startswith(prefix)})
    checkpoint.info.insert(0, ("weights from", f"{chosen!r}"))
    others = [g for g in tensor_groups if g != chosen]
    if others:
        checkpoint.info.append(("other entries", ", ".join(others)))
