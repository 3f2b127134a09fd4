"""Checkpoint folders: Hugging Face model folders, `torch.distributed.checkpoint`, single files."""

from __future__ import annotations

from pathlib import Path

import torch

from modelbrowse.core.errors import SourceError
from modelbrowse.core.reading.file_kinds import FileKind, sniff
from modelbrowse.core.sources.files import (
    Checkpoint,
    CheckpointOptions,
    open_file,
)
from modelbrowse.core.sources.key_rules import (
    CHECKPOINT_SUFFIXES,
    WEIGHTS_KEYS,
    describe_hf_config,
    hf_weight_files,
    is_split_set,
)
from modelbrowse.core.sources.safetensors_files import open_safetensors


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
    if len(candidates) == 1 or is_split_set(candidates):
        return open_file(candidates[0], options, map_location)
    if candidates:
        names = ", ".join(p.name for p in candidates[:5]) + (", ..." if len(candidates) > 5 else "")
        raise SourceError(f"{path} holds several checkpoints ({names}); open one of them")
    raise SourceError(
        f"{path} is a directory without a model (no config.json with weights, "
        "no torch.distributed.checkpoint .metadata, no checkpoint file)"
    )


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


# Top-level entries of a training checkpoint that hold no weights.
_TRAINING_STATE_WORDS = ("optim", "sched", "scaler", "rng", "step", "epoch", "metric", "args")


def _is_training_state(name: str) -> bool:
    return any(word in name.lower() for word in _TRAINING_STATE_WORDS)


# --- torch.distributed.checkpoint ------------------------------------------------------------


def open_distributed(path: Path, options: CheckpointOptions, map_location: str) -> Checkpoint:
    """Tree and shapes from `.metadata`, read as data (never unpickled); the values are read
    later from each chunk's torch.save archive, mapped from its shard file."""
    from modelbrowse.core.reading.distributed import read_dcp_metadata
    from modelbrowse.core.sources.distributed import chunked_tensor
    from modelbrowse.core.sources.tensor_mapping import FileMaps, torch_dtype

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
