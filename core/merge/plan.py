"""What a merge will do, found before any value is read: the base's files and keys, and for
each base tensor the LoRA updates that add to it or the adapter's copy that replaces it.

The base is a Hugging Face folder (its shards in index order), or one safetensors or torch.save
file; the adapter is a PEFT folder. Both are read through the reading layer, never unpickled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.adapters import adapter_weights, read_adapter_config
from modelbrowse.core.reading.file_kinds import FileKind, sniff
from modelbrowse.core.reading.safetensors_header import read_header
from modelbrowse.core.reading.structured_text import read_json
from modelbrowse.core.sources.adapter_layout import (
    AdapterLayout,
    LoraModule,
    adapter_layout,
)
from modelbrowse.core.sources.files import CheckpointOptions, open_file
from modelbrowse.core.sources.key_rules import CHECKPOINT_SUFFIXES, hf_weight_files
from modelbrowse.core.sources.tensor_mapping import FileMaps, tensors_of, torch_dtype
from modelbrowse.core.units import printable

# The key of a tied output embedding a Hugging Face save leaves out, and the input embeddings
# it is tied to (the first of these a base holds).
OUTPUT_EMBEDDING = "lm_head.weight"
INPUT_EMBEDDINGS = (
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "embed_in.weight",
    "shared.weight",
)
# Parts of an adapter's key that name PEFT's wrapping, not the base's module.
WRAPPER_PARTS = ("base_layer", "modules_to_save")


class MergeError(ModelBrowseError):
    """The adapter cannot be merged into this base (or written where asked)."""


@dataclass
class Shard:
    """One weight file of the base: its tensors' keys in file order, shapes and dtypes, and
    the keys that repeat another one's tensor (alias -> key)."""

    path: Path
    entries: dict[str, tuple[tuple[int, ...], torch.dtype]]
    aliases: dict[str, str] = field(default_factory=dict)
    nbytes: int = 0


@dataclass
class MergePlan:
    """Everything a merge needs before it reads a value."""

    base: Path
    adapter: Path
    folder: Path | None  # a Hugging Face base folder: its config.json and tokenizer go along
    config: dict[str, Any] | None
    shards: list[Shard]
    layout: AdapterLayout
    adapter_tensors: dict[str, torch.Tensor]
    # Base key -> the LoRA modules whose update adds to it, in the base's module order.
    updates: dict[str, list[LoraModule]] = field(default_factory=dict)
    # Base bias key -> the modules with a LoRA bias (`lora_bias=True`) that adds to it.
    bias_updates: dict[str, list[LoraModule]] = field(default_factory=dict)
    # Base key -> the adapter's key of the copy that replaces it (`modules_to_save`).
    replaced: dict[str, str] = field(default_factory=dict)
    # A key the base file leaves out because the config ties it -> the key that holds it.
    tied: dict[str, str] = field(default_factory=dict)

    @property
    def fan_in_fan_out(self) -> bool:
        return self.layout.config.fan_in_fan_out

    @property
    def largest_shard(self) -> int:
        return max((s.nbytes for s in self.shards), default=0)

    @property
    def total_bytes(self) -> int:
        return sum(s.nbytes for s in self.shards)

    def summary(self) -> str:
        weights = len(self.updates)
        copies = len(self.replaced)
        tied = f", tied to {', '.join(self.tied)}" if self.tied else ""
        return f"{weights} weights updated, {copies} replaced by the adapter's copies{tied}"


def plan_merge(base: Path, adapter: Path) -> MergePlan:
    """The plan for merging the PEFT adapter folder `adapter` into `base`; a MergeError line
    for anything that would make the result wrong."""
    base, adapter = Path(base).expanduser(), Path(adapter).expanduser()
    try:
        return _plan(base, adapter)
    except ReadError as exc:
        raise MergeError(str(exc)) from None


def _plan(base: Path, adapter: Path) -> MergePlan:
    layout, adapter_tensors = _read_adapter(adapter)
    files, folder = base_files(base)
    config = None
    if folder is not None and (folder / "config.json").is_file():
        found = read_json(folder / "config.json", "a model config")
        config = found if isinstance(found, dict) else None
    shards = [_shard_entries(path) for path in files]
    plan = MergePlan(base, adapter, folder, config, shards, layout, adapter_tensors)
    _find_targets(plan)
    return plan


def _read_adapter(adapter: Path) -> tuple[AdapterLayout, dict[str, torch.Tensor]]:
    weights = adapter_weights(adapter) if adapter.is_dir() else None
    if weights is None:
        raise MergeError(
            f"--merge {adapter}: not a PEFT adapter folder (adapter_config.json beside "
            "adapter_model.safetensors or .bin)"
        )
    config = read_adapter_config(adapter)
    if config.peft_type.upper() != "LORA":
        raise MergeError(f"{adapter} is a {config.peft_type} adapter: only LoRA is merged")
    if config.use_dora:
        raise MergeError(
            f"{adapter} is a DoRA adapter: merging DoRA's magnitudes is not supported "
            "(PEFT's merge_and_unload merges it)"
        )
    checkpoint = open_file(weights, CheckpointOptions(), "cpu")
    shapes = {k: tuple(t.shape) for k, t in checkpoint.tensors.items()}
    layout = adapter_layout(config, shapes)
    if layout.problems:
        raise MergeError(f"{adapter}: {layout.problems[0]}")
    tensors = {layout.renamed[k]: t for k, t in checkpoint.tensors.items()}
    for module in layout.modules.values():
        if module.magnitude is not None:
            raise MergeError(f"{adapter}: {module.path} has a DoRA magnitude: not merged")
    return layout, tensors


def base_files(base: Path) -> tuple[list[Path], Path | None]:
    """The base's weight files in order, and its folder when it is a Hugging Face one."""
    if base.is_file():
        return [base], None
    if not base.is_dir():
        raise MergeError(f"no such file or folder: {base}")
    if (base / ".metadata").is_file():
        raise MergeError(
            f"{base} is a torch.distributed.checkpoint: convert it to a Hugging Face "
            "folder first (--output FOLDER --arch CONFIG)"
        )
    if adapter_weights(base) is not None:
        raise MergeError(f"{base} is a PEFT adapter folder, not a base model")
    try:
        files = hf_weight_files(base)
    except ModelBrowseError as exc:
        raise MergeError(str(exc)) from None
    if files:
        return files, base
    found = sorted(
        p for p in base.iterdir() if p.is_file() and p.name.lower().endswith(CHECKPOINT_SUFFIXES)
    )
    if len(found) == 1:
        return found, None
    raise MergeError(f"{base} holds no model weights to merge into (or several checkpoints)")


def _shard_entries(path: Path) -> Shard:
    """The keys, shapes and dtypes of one file, from its header (or its pickle, read as data)."""
    if sniff(path) is FileKind.SAFETENSORS:
        header = read_header(path)
        entries = {k: (r.shape, torch_dtype(r.dtype)) for k, r in header.tensors.items()}
        nbytes = sum(r.nbytes for r in header.tensors.values())
        return Shard(path, entries, dict(header.aliases), nbytes)
    tensors, aliases = open_shard(path)
    entries = {k: (tuple(t.shape), t.dtype) for k, t in tensors.items()}
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    return Shard(path, entries, aliases, nbytes)


def open_shard(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """One file's tensors, mapped from it (each storage once), without the keys that repeat
    another's; and those keys (alias -> key)."""
    kind = sniff(path)
    if kind is FileKind.SAFETENSORS:
        header = read_header(path)
        return tensors_of(header.tensors, maps=FileMaps()), dict(header.aliases)
    if kind not in (FileKind.TORCH_ZIP, FileKind.TORCH_LEGACY):
        raise MergeError(
            f"{path} is {kind.value}: --merge reads safetensors and torch.save weight files"
        )
    try:
        checkpoint = open_file(path, CheckpointOptions(), "cpu")
    except ModelBrowseError as exc:
        raise MergeError(str(exc)) from None
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple[Any, ...], str] = {}
    for key, tensor in checkpoint.tensors.items():
        if type(tensor) is not torch.Tensor and not isinstance(tensor, torch.nn.Parameter):
            raise MergeError(f"{path}: {printable(key)} is not a plain tensor (quantized?)")
        ident = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tuple(tensor.stride()),
            tensor.dtype,
        )
        if ident in first and tensor.numel() > 0:
            aliases[key] = first[ident]
        else:
            first[ident] = key
            tensors[key] = tensor.detach()
    return tensors, aliases


def _find_targets(plan: MergePlan) -> None:
    """Each adapted module's weight in the base, checked to fit; each copy's base key."""
    keys: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    aliases: dict[str, str] = {}
    for shard in plan.shards:
        keys.update(shard.entries)
        aliases.update(shard.aliases)
    if OUTPUT_EMBEDDING not in keys and OUTPUT_EMBEDDING not in aliases and _ties(plan.config):
        tied_to = next((k for k in keys if k.endswith(INPUT_EMBEDDINGS)), None)
        if tied_to is not None:
            plan.tied[OUTPUT_EMBEDDING] = tied_to

    def resolve(key: str) -> str | None:
        key = aliases.get(key, plan.tied.get(key, key))
        return key if key in keys else None

    order = {key: number for number, key in enumerate(keys)}
    missing: list[str] = []
    for module in plan.layout.modules.values():
        target = resolve(f"{module.path}.weight")
        if target is None:
            missing.append(module.path)
            continue
        _check_fit(module, keys[target][0], plan.fan_in_fan_out)
        plan.updates.setdefault(target, []).append(module)
        bias_key = f"{module.path}.lora_B.bias"
        if bias_key in plan.adapter_tensors:
            bias = resolve(f"{module.path}.bias")
            if bias is None:
                raise MergeError(f"{module.path} has a LoRA bias but the base layer has no bias")
            plan.bias_updates.setdefault(bias, []).append(module)
    if missing:
        raise MergeError(
            f"the adapter adapts {len(missing)} module(s) the base has no weight for: "
            f"{', '.join(printable(m) for m in missing[:3])}{' …' if len(missing) > 3 else ''}"
        )
    # PEFT merges in the model's module order: the same order where updates meet in one tensor.
    for modules in plan.updates.values():
        modules.sort(key=lambda m: order.get(f"{m.path}.weight", len(order)))
    lora_keys = {k for m in plan.layout.modules.values() for k in m.keys}
    for shown, tensor in plan.adapter_tensors.items():
        if shown in lora_keys:
            continue
        target = resolve(_base_key(shown))
        if target is None:
            raise MergeError(
                f"the adapter holds {printable(shown)}, which names no tensor in the base"
            )
        if tuple(tensor.shape) != keys[target][0]:
            raise MergeError(
                f"the adapter's {printable(shown)} has shape {tuple(tensor.shape)}, "
                f"the base's {printable(target)} {keys[target][0]}"
            )
        plan.replaced[target] = shown


def _ties(config: dict[str, Any] | None) -> bool:
    """Whether a Hugging Face config ties the output embeddings to the input ones."""
    if config is None:
        return False
    text = config.get("text_config")
    value = config.get("tie_word_embeddings")
    if value is None and isinstance(text, dict):
        value = text.get("tie_word_embeddings")
    return value is not False  # transformers' default is to tie


def _base_key(shown: str) -> str:
    """`x.modules_to_save.weight` and `x.base_layer.weight` -> `x.weight`."""
    return ".".join(part for part in shown.split(".") if part not in WRAPPER_PARTS)


def _check_fit(module: LoraModule, shape: tuple[int, ...], fan_in_fan_out: bool) -> None:
    a, b = module.a, module.b
    if module.embedding:
        expected: tuple[int, ...] = (a[1], b[0])
    elif len(a) == 2:
        expected = (a[1], b[0]) if fan_in_fan_out else (b[0], a[1])
    elif len(a) == 4 and len(b) == 4 and b[2:] == (1, 1):
        expected = (b[0], a[1], *a[2:])
    else:
        raise MergeError(f"{printable(module.path)}: LoRA of shape A {a}, B {b} is not merged")
    if tuple(shape) != expected:
        raise MergeError(
            f"{printable(module.path)}: A {a} and B {b} do not fit the base's weight {shape}"
        )


def adapted_keys(plan: MergePlan) -> Iterator[str]:
    """The base keys the merge changes."""
    yield from dict.fromkeys([*plan.updates, *plan.bias_updates, *plan.replaced])
