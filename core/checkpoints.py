"""Checkpoint files and folders: find the weights, load them lazily, and say what else is there.

Every file is read by the torch-free reading layer (`core.reading`): its kind told by its bytes,
its pickle run by a machine that imports and calls nothing, its tensors located in the file and
checked against its size. Data is then mapped (`core.tensor_mapping`), so opening reads headers
only and a tensor's bytes are read when something looks at them. Only `--trust-pickle` hands a
file to `torch.load(weights_only=False)`.
"""

from __future__ import annotations

import os
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbrowse.core.errors import SourceError, UsageError
from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.file_kinds import FileKind, sniff
from modelbrowse.core.reading.nested import flatten
from modelbrowse.core.reading.records import TensorRecord
from modelbrowse.core.reading.torch_files import (
    TorchContents,
    imports_text,
    read_torch_legacy,
    read_torch_zip,
)
from modelbrowse.core.reading.torch_pickles import Unread
from modelbrowse.core.reading.zip_members import ZIP_READ_ERRORS
from modelbrowse.core.training_info import describe_extras, is_optimizer_state, short
from modelbrowse.core.units import printable

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".tar", ".pkl")
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


@dataclass
class CheckpointOptions:
    """How to open a checkpoint: the command line's `--key`, `--keep-prefix`, ... flags."""

    key: str | None = None
    keep_prefix: bool = False
    strip_prefix: str | None = None
    trust_pickle: bool = False
    device: str | None = None
    keys_only: bool = False  # a Hugging Face folder as its keys, not built by transformers

    def flags(self) -> list[str]:
        """The command-line flags these options stand for, as a user typed them."""
        given = {
            "--key": self.key is not None,
            "--keep-prefix": self.keep_prefix,
            "--strip-prefix": self.strip_prefix is not None,
            "--trust-pickle": self.trust_pickle,
            "--device": self.device is not None,
            "--keys-only": self.keys_only,
        }
        return [flag for flag, on in given.items() if on]


@dataclass
class Checkpoint:
    """What a checkpoint file or folder holds."""

    path: Path
    format: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    module: nn.Module | None = None  # TorchScript, or a trusted pickled model
    info: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # For formats whose tensors start on `meta` (distributed checkpoints): reads the data of
    # the named keys (as the file names them, see `original_key`).
    load_data: Callable[[list[str]], dict[str, torch.Tensor]] | None = None
    # Shown key -> the key in the file, for the keys a prefix was stripped from.
    renamed: dict[str, str] = field(default_factory=dict)

    def original_key(self, key: str) -> str:
        return self.renamed.get(key, key)

    def rename(self, renamed: dict[str, str]) -> None:
        """Keep only the keys in `renamed` (old -> new), in order, under their new names."""
        self.tensors = {new: self.tensors[old] for old, new in renamed.items()}
        self.renamed = {new: self.original_key(old) for old, new in renamed.items()}

    def read_all(self) -> dict[str, torch.Tensor]:
        """Every tensor with data: what `tensors` holds, or what `load_data` reads."""
        if self.load_data is None:
            return self.tensors
        keys = list(self.tensors)
        data = self.load_data([self.original_key(k) for k in keys])
        return {key: data[self.original_key(key)] for key in keys}


def looks_like_path(spec: str) -> bool:
    """Whether a source names a file or folder rather than a zoo model or an import path."""
    if os.path.exists(spec):
        return True
    attr = spec.rpartition(":")[2]
    if ":" in spec and attr and all(part.isidentifier() for part in attr.split(".")):
        return False  # package.module:attr or ./file.py:attr
    return spec.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in spec or spec.startswith("~")


def open_checkpoint(spec: str, options: CheckpointOptions | None = None) -> Checkpoint:
    """Open a checkpoint file or folder; every problem is a SourceError of one line."""
    options = options or CheckpointOptions()
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"no such file or directory: {spec}")
    map_location = _map_location(options.device)
    if path.is_dir():
        from modelbrowse.core.checkpoint_folders import open_folder

        checkpoint = open_folder(path, options, map_location)
    else:
        checkpoint = open_file(path, options, map_location)
    checkpoint.path = path
    if checkpoint.module is None:
        _strip_wrapper_prefix(checkpoint, options.keep_prefix)
        if options.strip_prefix:
            _strip_prefix(checkpoint, options.strip_prefix)
        if not checkpoint.tensors:
            raise SourceError(f"{spec} holds no tensors")
    return checkpoint


def _map_location(device: str | None) -> str:
    if device is None or device == "cpu":
        return "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r} is not a device (cpu, cuda, cuda:1, ...)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return str(parsed)


# --- single files ----------------------------------------------------------------------------


def open_file(path: Path, options: CheckpointOptions, map_location: str) -> Checkpoint:
    kind = sniff(path)
    if kind is FileKind.SAFETENSORS:
        from modelbrowse.core.safetensors_files import open_safetensors

        return open_safetensors([path], map_location)
    if kind is FileKind.TORCHSCRIPT:
        return _open_torchscript(path, map_location)
    if kind is FileKind.PICKLE:
        raise SourceError(f"{path} is a plain Python pickle, not a torch checkpoint")
    checkpoint = Checkpoint(
        path, "torch (legacy format)" if kind is FileKind.TORCH_LEGACY else "torch"
    )
    checkpoint.files = [path]
    if options.trust_pickle:
        loaded = _torch_load_trusted(path, kind, map_location)
        checkpoint.warnings.append(
            f"trusted pickle: loading this file ran code from it{_imports_text(path, kind)}"
        )
        if isinstance(loaded, nn.Module):
            checkpoint.format = "pickled model"
            checkpoint.module = loaded.to(map_location)
            return checkpoint
    else:
        loaded = read_torch(path, kind).value
    _take_weights(checkpoint, loaded, options.key, map_location)
    return checkpoint


def read_torch(path: Path, kind: FileKind, *, scan: bool = False) -> TorchContents:
    """A torch.save file (zip or legacy) as plain data with tensor records; a pickle that
    names anything outside the weights-only allow list is refused unless `scan`."""
    reader = read_torch_legacy if kind is FileKind.TORCH_LEGACY else read_torch_zip
    return reader(path, scan=scan)


def _torch_load_trusted(path: Path, kind: FileKind, map_location: str) -> Any:
    """`--trust-pickle`: the one place a file is unpickled with code allowed to run."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.name.endswith(".safetensors"):
                # torch.load reads a path so named as safetensors, whatever it holds: a torch
                # archive in disguise is passed as an open file (which cannot be mapped).
                with path.open("rb") as handle:
                    return torch.load(handle, map_location=map_location, weights_only=False)
            return torch.load(
                path,
                map_location=map_location,
                weights_only=False,
                mmap=kind is FileKind.TORCH_ZIP,
            )
    except Exception as exc:  # torch raises many types for a bad file
        if isinstance(exc, (EOFError, IndexError, struct.error)) or "ran out of input" in str(exc):
            raise SourceError(
                f"cannot read {path} ({kind.value}): it ends early or is damaged (truncated?)"
            ) from None
        raise SourceError(f"cannot read {path} ({kind.value}): {first_line(exc)}") from None


def _imports_text(path: Path, kind: FileKind) -> str:
    """`; it imports os.system, ...`: what loading the pickle imports, or '' if unknown."""
    return imports_text(unsafe_globals(path, kind))


def unsafe_globals(path: Path, kind: FileKind | None = None) -> list[str]:
    """The globals outside the weights-only allow list a torch file names, read without
    running it ([] for a file that cannot be read)."""
    try:
        return read_torch(path, kind or sniff(path), scan=True).foreign
    except ReadError:
        return []


def _damaged_entry(path: Path) -> str | None:
    """The first entry of a zip archive whose data fails its CRC-32, if any."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except ZIP_READ_ERRORS:
        return "the archive's directory or a compressed entry"


def _open_torchscript(path: Path, map_location: str) -> Checkpoint:
    """The module tree from the archive's saved state; its code is never loaded or run (torch's
    loader runs a scripted `__setstate__`)."""
    from modelbrowse.core.reading.torchscript import read_torchscript
    from modelbrowse.core.scripted_tree import scripted_tree

    # A damaged tensor would be mapped as it is: checksums are checked first (reads the file once).
    damaged = _damaged_entry(path)
    if damaged is not None:
        raise SourceError(
            f"{path} is a damaged TorchScript archive: {printable(damaged, 80)} fails its "
            "checksum (changed or cut since it was written?)"
        )
    record = read_torchscript(path)
    module = scripted_tree(record, map_location)
    checkpoint = Checkpoint(path, "TorchScript", module=module, files=[path])
    checkpoint.info.append(("scripted class", record.name))
    checkpoint.info.append(("code", "not loaded: the tree is read from the saved state"))
    skipped = sum(1 for r in record.walk() if r.own_state)
    if skipped:
        checkpoint.info.append(
            ("own state", f"{skipped} module(s) saved through their own __getstate__: empty here")
        )
    return checkpoint


# --- training checkpoints: where are the weights? ---------------------------------------------

Tensor = (torch.Tensor, TensorRecord)  # a leaf of a loaded pickle: trusted, or read as a record


def _take_weights(checkpoint: Checkpoint, loaded: Any, key: str | None, device: str) -> None:
    where = str(checkpoint.path)
    if not isinstance(loaded, Mapping):
        raise SourceError(
            f"{checkpoint.path} holds a {_type_name(loaded)}, not a state_dict or a checkpoint dict"
        )
    if key is not None and _all_tensors(loaded, where):
        raise SourceError(
            f"--key {key!r}: {checkpoint.path} is a plain state_dict with no entries to choose "
            "(--strip-prefix keeps the keys under a prefix)"
        )
    if key is not None:
        weights = _lookup(loaded, key, where)
        if weights is None:
            raise SourceError(
                f"--key {key!r}: {checkpoint.path} has no such entry "
                f"(it has: {', '.join(map(str, list(loaded)[:12]))})"
            )
        rest = {k: v for k, v in loaded.items() if k != key.split(".")[0]}
        checkpoint.info.insert(0, ("weights from", f"[{key!r}] (--key)"))
    elif _all_tensors(loaded, where):
        weights, rest = loaded, {}
    else:
        found = _find_weights(loaded, where)
        if found is None:
            raise SourceError(
                f"{checkpoint.path} holds a dict without a state_dict in it "
                f"(entries: {', '.join(map(str, list(loaded)[:12]))}); name one with --key"
            )
        found_key, weights = found
        rest = {k: v for k, v in loaded.items() if k != found_key}
        others = [
            str(k)
            for k, v in rest.items()
            if isinstance(v, Mapping) and v and _all_tensors(v, where)
        ]
        note = f" (also there: {', '.join(others)}; choose with --key)" if others else ""
        checkpoint.info.insert(0, ("weights from", f"[{found_key!r}]{note}"))
    entries = list(flatten(weights, where))
    from modelbrowse.core.tensor_mapping import FileMaps, tensors_of

    maps = FileMaps()
    records = {k: v for k, v in entries if isinstance(v, TensorRecord)}
    mapped = tensors_of(records, device, maps) if records else {}
    checkpoint.tensors = {
        k: mapped[k] if isinstance(v, TensorRecord) else v
        for k, v in entries
        if isinstance(v, Tensor)
    }
    unread = [k for k, v in entries if isinstance(v, Unread)]
    if unread:
        kinds = sorted({v.what for _, v in entries if isinstance(v, Unread)})
        checkpoint.info.append(("not loaded", short(f"{', '.join(kinds)}: {', '.join(unread)}")))
    skipped = [k for k, v in entries if not isinstance(v, (*Tensor, Unread))]
    if skipped:
        checkpoint.info.append(("non-tensor entries", short(", ".join(skipped))))
    checkpoint.info.extend(describe_extras(_shown(rest, device, maps)))


def _shown(rest: Mapping[Any, Any], device: str, maps: Any) -> dict[Any, Any]:
    """The entries beside the weights, with the tensor records they show directly mapped."""
    from modelbrowse.core.tensor_mapping import tensors_of

    def mapped(value: Any) -> Any:
        if isinstance(value, TensorRecord):
            return tensors_of({"": value}, device, maps)[""]
        return value

    shown: dict[Any, Any] = {}
    for key, value in rest.items():
        if isinstance(value, Mapping) and any(isinstance(v, TensorRecord) for v in value.values()):
            value = {k: mapped(v) for k, v in value.items()}
        shown[key] = mapped(value)
    return shown


def _type_name(value: Any) -> str:
    if isinstance(value, TensorRecord):
        return "Tensor"
    return type(value).__name__


def _lookup(loaded: Mapping[Any, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value: Any = loaded
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, Mapping) and _has_tensors(value, where) else None


def _leaves(mapping: Mapping[Any, Any], where: str) -> Iterable[Any]:
    return (v for _, v in flatten(mapping, where))


def _all_tensors(mapping: Mapping[Any, Any], where: str) -> bool:
    """Every leaf a tensor (or one the reader names but does not load: a quantized one)."""
    return all(isinstance(v, (*Tensor, Unread)) for v in _leaves(mapping, where))


def _has_tensors(mapping: Mapping[Any, Any], where: str) -> bool:
    return any(isinstance(v, Tensor) for v in _leaves(mapping, where))


def _numel(value: Any) -> int:
    return value.numel if isinstance(value, TensorRecord) else int(value.numel())


def _find_weights(loaded: Mapping[Any, Any], where: str) -> tuple[str, Mapping[str, Any]] | None:
    for key in WEIGHTS_KEYS:
        value = loaded.get(key)
        if isinstance(value, Mapping) and _has_tensors(value, where):
            return key, value
    # Otherwise the biggest dict of tensors that is not optimizer state.
    candidates = [
        (sum(_numel(v) for v in _leaves(value, where) if isinstance(v, Tensor)), str(key), value)
        for key, value in loaded.items()
        if isinstance(value, Mapping)
        and _has_tensors(value, where)
        and not is_optimizer_state(value)
    ]
    if not candidates:
        return None
    _, key, value = max(candidates, key=lambda c: c[0])
    return key, value


def _strip_prefix(checkpoint: Checkpoint, prefix: str) -> None:
    """`--strip-prefix backbone.`: keys under it lose it; the others are dropped."""
    kept = {k: k[len(prefix) :] for k in checkpoint.tensors if k.startswith(prefix)}
    if not kept:
        first = ", ".join(list(checkpoint.tensors)[:3])
        raise SourceError(f"--strip-prefix {prefix!r}: no key starts with it (keys: {first}, ...)")
    dropped = len(checkpoint.tensors) - len(kept)
    checkpoint.rename(kept)
    note = f"; {dropped} other keys left out" if dropped else ""
    checkpoint.info.append(("key prefix", f"{prefix!r} stripped (--strip-prefix){note}"))


def _strip_wrapper_prefix(checkpoint: Checkpoint, keep: bool) -> None:
    for prefix in WRAPPER_PREFIXES:
        keys = list(checkpoint.tensors)
        if not keys or not all(k.startswith(prefix) for k in keys):
            continue
        if keep:
            checkpoint.info.append(("key prefix", f"every key starts with {prefix!r} (kept)"))
            return
        checkpoint.rename({k: k[len(prefix) :] for k in keys})
        checkpoint.info.append(
            ("key prefix", f"{prefix!r} stripped from every key (--keep-prefix keeps it)")
        )


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
