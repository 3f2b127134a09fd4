"""Models written as Hugging Face folders (by `hf_folder.py`): which sources can be, the
config.json that goes with them, and their tensors as transformers saves them (a tied output
embedding once, under the input embedding's name).

Two ways in: an opened model, edited or not, written from memory (`save_model_folder`, for
`w` and `--recipe R --output FOLDER`), and a checkpoint folder converted tensor by tensor
without building the model (`convert_folder`, for `SOURCE --output FOLDER`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modelbrowse.core.reading.limits import ReadError
from modelbrowse.core.reading.structured_text import read_json
from modelbrowse.core.saving.hf_folder import DEFAULT_SHARD_SIZE, FolderReport, write_hf_folder
from modelbrowse.core.saving.transaction import SaveError
from modelbrowse.core.sources.distributed import chunked_tensor as chunked_tensor  # tests wrap it

if TYPE_CHECKING:
    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.sources.base import Source
    from modelbrowse.core.sources.files import Checkpoint

RECIPE_NAME = "modelbrowse.recipe.json"  # inside the folder: written with it, in one step
HF_FORMAT = "Hugging Face folder"
DCP_FORMAT = "torch.distributed.checkpoint"
NOT_A_FOLDER_SOURCE = (
    "a Hugging Face folder is written from a model opened from a Hugging Face folder or a "
    "distributed checkpoint; name a .pt or .safetensors file"
)
NEEDS_ARCH = (
    "a distributed checkpoint becomes a Hugging Face folder with its architecture's config: "
    "open it with --arch CONFIG (a config.json, or a folder holding one)"
)
_CLASSIFIERS = ("ForSequenceClassification", "ForTokenClassification", "ForImageClassification")


@dataclass(frozen=True)
class FolderPlan:
    """What a folder is made from besides the tensors."""

    config: Path  # the config.json the new one starts from
    copy_from: Path  # the folder whose tokenizer and generation files are copied


def folder_plan(source: Source) -> FolderPlan:
    """Where `source`'s config.json and tokenizer come from; a SaveError saying why it
    cannot be written as a Hugging Face folder."""
    from modelbrowse.core.sources.checkpoint import CheckpointSource
    from modelbrowse.core.sources.hf_models import HFConfigSource

    if isinstance(source, HFConfigSource) and source.config_path is not None:
        return FolderPlan(source.config_path, source.config_path.parent)
    if not isinstance(source, CheckpointSource):
        raise SaveError(NOT_A_FOLDER_SOURCE)
    if source.loaded.format.startswith(HF_FORMAT):
        from modelbrowse.core.sources.key_rules import config_file

        folder = Path(source.spec).expanduser()
        folder = folder if folder.is_dir() else folder.parent
        config = config_file(folder)
        if config is None:
            raise SaveError(f"{folder} has no config.json naming a model_type to write with")
        return FolderPlan(config, folder)
    if source.loaded.format == DCP_FORMAT:
        if source.arch is None:
            raise SaveError(NEEDS_ARCH)
        try:
            return folder_plan(source.arch)
        except SaveError:
            raise SaveError(NEEDS_ARCH) from None
    raise SaveError(NOT_A_FOLDER_SOURCE)


def folder_refusal(source: Source) -> str | None:
    """Why `source` cannot be written as a Hugging Face folder, or None."""
    try:
        folder_plan(source)
    except SaveError as exc:
        return str(exc)
    return None


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path, "config.json")
    except ReadError as exc:
        raise SaveError(str(exc)) from None
    if not isinstance(data, dict):
        raise SaveError(f"{path} is not a JSON object")
    return data


# --- what transformers expects ---------------------------------------------------------------


def _embeddings(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """A transformers model's input and output embeddings, where it has both."""
    found = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        method = getattr(model, getter, None)
        try:
            module = method() if callable(method) else None
        except (NotImplementedError, AttributeError):
            module = None
        if not isinstance(module, nn.Module) or not isinstance(
            getattr(module, "weight", None), torch.Tensor
        ):
            return None
        found.append(module)
    return found[0], found[1]


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def embeddings_tied(model: nn.Module) -> bool | None:
    """Whether the output embedding is the input one's weight; None without such a pair."""
    pair = _embeddings(model)
    if pair is None:
        return None
    inputs, outputs = pair
    return outputs is not inputs and _weight(outputs) is _weight(inputs)


def left_out(model: nn.Module) -> set[str]:
    """The keys transformers does not write: a tied output embedding's weight."""
    pair = _embeddings(model)
    if pair is None or not embeddings_tied(model):
        return set()
    outputs = pair[1]
    return {
        f"{name}.weight" if name else "weight"
        for name, module in model.named_modules(remove_duplicate=False)
        if module is outputs
    }


def _label_count(model: nn.Module) -> int | None:
    """The classes a classification head gives, for a transformers classifier."""
    if not any(word in type(model).__name__ for word in _CLASSIFIERS):
        return None
    for name in ("score", "classifier"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
            if linears:
                return linears[-1].out_features
    return None


def main_dtype(dtypes: Iterator[tuple[torch.dtype, int]]) -> torch.dtype | None:
    """The floating dtype holding the most values (dtype, count pairs), or None."""
    counts: dict[torch.dtype, int] = {}
    for dtype, count in dtypes:
        if dtype.is_floating_point:
            counts[dtype] = counts.get(dtype, 0) + count
    return max(counts, key=lambda d: counts[d]) if counts else None


def nbytes(tensor: torch.Tensor, dtype: torch.dtype | None) -> int:
    """The bytes `tensor` takes once written (floating tensors cast to `dtype`)."""
    if dtype is not None and tensor.is_floating_point():
        return tensor.numel() * dtype.itemsize
    return tensor.numel() * tensor.element_size()


def updated_config(
    config: dict[str, Any], model: nn.Module | None, dtype: torch.dtype | None
) -> dict[str, Any] | None:
    """`config` with what the model (as edited) and the written dtype change in it, or None
    when nothing does (the file is then copied as it is)."""
    new = copy.deepcopy(config)
    if model is not None:
        _follow_model(new, model)
    if dtype is not None:
        name = str(dtype).removeprefix("torch.")
        keys = [k for k in ("dtype", "torch_dtype") if k in new]
        # Without one, transformers loads float32.
        if any(new[k] != name for k in keys) or (not keys and name != "float32"):
            for key in keys or ["torch_dtype"]:  # the name every transformers version reads
                new[key] = name
    return None if new == config else new


def _follow_model(new: dict[str, Any], model: nn.Module) -> None:
    settings = getattr(model, "config", None)
    tied = embeddings_tied(model)
    if tied is not None and getattr(settings, "tie_word_embeddings", None) != tied:
        new["tie_word_embeddings"] = tied
    pair = _embeddings(model)
    if pair is not None:
        vocab = int(_weight(pair[0]).shape[0])
        holder = new if "vocab_size" in new else new.get("text_config")
        if isinstance(holder, dict) and holder.get("vocab_size", vocab) != vocab:
            holder["vocab_size"] = vocab
    labels = _label_count(model)
    before = getattr(settings, "num_labels", None)
    if labels is not None and labels != before:
        new["id2label"] = {str(i): f"LABEL_{i}" for i in range(labels)}
        new["label2id"] = {f"LABEL_{i}": i for i in range(labels)}
        if "num_labels" in new:
            new["num_labels"] = labels


# --- an opened model -------------------------------------------------------------------------


def save_model_folder(
    model: nn.Module,
    target: Path,
    source: Source,
    init_seed: int | None,
    edits: list[Edit],
    *,
    max_shard_size: int | None = None,
    dtype: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> FolderReport:
    """Write the model (as edited) as a Hugging Face folder, its recipe inside.

    `dtype` (`bfloat16`, ...) casts floating tensors on the way as `save_edited` does: those
    under a cast edit's path keep what it gave them, and the recipe records the cast."""
    from modelbrowse.core.edits.cast import write_cast
    from modelbrowse.core.recipe import build_recipe, recipe_text
    from modelbrowse.core.saving.weights import state_of
    from modelbrowse.core.tensor_bytes import check_files_hold

    if source.write_refusal is not None:
        raise SaveError(source.write_refusal)
    plan = folder_plan(source)
    state = state_of(model)
    check_files_hold(state)  # a mapped file truncated under the model: an error, not SIGBUS
    for key in left_out(model):
        state.pop(key, None)
    dtypes: dict[str, torch.dtype] = {}
    if dtype is not None:
        cast = write_cast(dtype, [record for edit in edits for record in edit.records()])
        dtypes = cast.plan(model)
        edits = [*edits, cast] if dtypes else edits
    written = main_dtype((dtypes.get(k, t.dtype), t.numel()) for k, t in state.items())
    config = updated_config(read_config(plan.config), model, written)
    recipe = recipe_text(build_recipe(source, init_seed, edits, model, None))
    total = sum(t.numel() * dtypes.get(k, t.dtype).itemsize for k, t in state.items())

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        for key, tensor in state.items():  # cast one at a time: never a second copy of all
            wanted = dtypes.get(key)
            yield key, tensor if wanted is None or wanted == tensor.dtype else tensor.to(wanted)

    return write_hf_folder(
        target,
        tensors(),
        max_shard_size=max_shard_size or DEFAULT_SHARD_SIZE,
        config=config,
        copy_from=plan.copy_from,
        progress=progress,
        total_bytes=total,
        files={RECIPE_NAME: recipe},
    )


# --- a checkpoint folder, tensor by tensor ---------------------------------------------------


def convert_folder(
    source: Source,
    target: Path,
    *,
    max_shard_size: int | None = None,
    dtype: torch.dtype | None = None,
    progress: Callable[[float], None] | None = None,
) -> FolderReport:
    """Write a Hugging Face or distributed checkpoint folder as a Hugging Face folder, reading
    one tensor at a time (a distributed checkpoint checked against its `--arch` first)."""
    from modelbrowse.core.sources.checkpoint import CheckpointSource

    plan = folder_plan(source)
    if not isinstance(source, CheckpointSource):
        raise SaveError(f"{source.spec} holds no weights to convert")
    checkpoint = source.loaded
    if checkpoint.read_only is not None:
        raise SaveError(checkpoint.read_only)
    model: nn.Module | None = None
    names = list(checkpoint.tensors)
    if checkpoint.format == DCP_FORMAT:
        model, _ = source.build_structure()
        names = _fitting_keys(source, model)
    meta = {key: checkpoint.tensors[key] for key in names}
    written = dtype or main_dtype((t.dtype, t.numel()) for t in meta.values())
    config = updated_config(read_config(plan.config), model, written)

    read = _distributed_reader(checkpoint) if checkpoint.format == DCP_FORMAT else None

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        for key in names:
            yield key, checkpoint.tensors[key] if read is None else read(key)

    total = sum(nbytes(t, dtype) for t in meta.values())
    return write_hf_folder(
        target,
        tensors(),
        max_shard_size=max_shard_size or DEFAULT_SHARD_SIZE,
        dtype=dtype,
        config=config,
        copy_from=plan.copy_from,
        progress=progress,
        total_bytes=total,
    )


def _distributed_reader(checkpoint: Checkpoint) -> Callable[[str], torch.Tensor]:
    """One tensor of a distributed checkpoint at a time, each from its own map of the files:
    the checkpoint's shared maps keep every tensor they made (and every chunk they had to
    copy to align it), which here would add up to the whole checkpoint."""
    from modelbrowse.core.reading.distributed import read_dcp_metadata
    from modelbrowse.core.sources.tensor_mapping import FileMaps

    metadata = read_dcp_metadata(checkpoint.path)

    def read(key: str) -> torch.Tensor:
        stored = checkpoint.original_key(key)
        return chunked_tensor(checkpoint.path, stored, metadata.tensors[stored], FileMaps())

    return read


def _fitting_keys(source: Any, model: nn.Module) -> list[str]:
    """The model's keys in its order (less a tied output embedding), all found in the
    checkpoint with their shapes; else a SaveError naming what does not fit."""
    fit = source.fit
    tied = {key for key, _ in fit.tied}
    missing = [key for key in fit.missing if key not in tied]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({', '.join(missing[:3])})")
    if fit.unexpected:
        problems.append(f"{len(fit.unexpected)} unexpected ({', '.join(fit.unexpected[:3])})")
    if fit.mismatched:
        key, found, wanted = fit.mismatched[0]
        problems.append(f"{len(fit.mismatched)} of another shape ({key}: {found}, not {wanted})")
    if problems:
        raise SaveError(
            f"{source.spec} does not fit {fit.arch}: {'; '.join(problems)}; nothing written"
        )
    skip = left_out(model)
    return [key for key in model.state_dict() if key not in skip and key not in tied]


def replay_to_folder(
    recipe_file: Path,
    source: Source,
    target: Path,
    *,
    max_shard_size: int | None = None,
    dtype: str | None = None,
) -> FolderReport:
    """`SOURCE --recipe R --output FOLDER`: the recipe replayed, written as a folder."""
    from modelbrowse.core.recipe import replayed

    folder_plan(source)  # refused before the model is built
    model, seed, edits = replayed(recipe_file, source)
    return save_model_folder(
        model, target, source, seed, edits, max_shard_size=max_shard_size, dtype=dtype
    )
