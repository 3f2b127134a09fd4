"""Checkpoint files and folders: find the weights, load them lazily, and say what else is there.

Every `.pt` load is `weights_only=True` unless the user passed `--trust-pickle`; data is
memory-mapped (torch's `mmap=True`, safetensors' `safe_open`), so opening reads headers only and a
tensor's bytes are read when something looks at them.
"""

from __future__ import annotations

import os
import struct
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbrowse.core.errors import SourceError, UsageError
from modelbrowse.core.file_kinds import ZIP_READ_ERRORS, FileKind, sniff
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
    loaded = _torch_load(path, kind, options, map_location)
    checkpoint = Checkpoint(
        path, "torch (legacy format)" if kind is FileKind.TORCH_LEGACY else "torch"
    )
    checkpoint.files = [path]
    if options.trust_pickle:
        checkpoint.warnings.append(
            f"trusted pickle: loading this file ran code from it{_imports_text(path)}"
        )
    if isinstance(loaded, nn.Module):
        checkpoint.format = "pickled model"
        checkpoint.module = loaded.to(map_location)
        return checkpoint
    _take_weights(checkpoint, loaded, options.key)
    return checkpoint


def _torch_load(path: Path, kind: FileKind, options: CheckpointOptions, map_location: str) -> Any:
    mmap = kind is FileKind.TORCH_ZIP  # the legacy format cannot be memory-mapped
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # weights_only stays explicit: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD must not turn it off.
            if path.name.endswith(".safetensors"):
                # torch.load reads a path so named as safetensors, whatever it holds: a torch
                # archive in disguise is passed as an open file (which cannot be mapped).
                with path.open("rb") as handle:
                    return torch.load(
                        handle, map_location=map_location, weights_only=not options.trust_pickle
                    )
            return torch.load(
                path,
                map_location=map_location,
                weights_only=not options.trust_pickle,
                mmap=mmap,
            )
    except Exception as exc:  # torch raises many types for a bad file
        if not options.trust_pickle and _is_weights_only_refusal(exc):
            raise SourceError(_pickle_refusal(path)) from None
        if isinstance(exc, (EOFError, IndexError, struct.error)) or "ran out of input" in str(exc):
            raise SourceError(
                f"cannot read {path} ({kind.value}): it ends early or is damaged (truncated?)"
            ) from None
        raise SourceError(f"cannot read {path} ({kind.value}): {first_line(exc)}") from None


def _is_weights_only_refusal(exc: Exception) -> bool:
    import pickle

    return (
        isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in str(exc).lower()
    )


def _imports_text(path: Path) -> str:
    """`; it imports os.system, ...`: what loading the pickle imports, or '' if unknown."""
    # The file's own classes first: they say more than the torch.nn ones every model imports.
    needs = sorted(unsafe_globals(path), key=lambda name: (name.startswith("torch."), name))
    more = f" and {len(needs) - 4} more" if len(needs) > 4 else ""
    return f"; it imports {', '.join(needs[:4])}{more}" if needs else ""


def _pickle_refusal(path: Path) -> str:
    what = _imports_text(path)
    return (
        f"{path} holds pickled Python objects (a whole model?), and loading it runs code from the "
        f"file{what}. Pass --trust-pickle only if you trust where it came from"
    )


def unsafe_globals(path: Path) -> list[str]:
    """The globals a pickled checkpoint would import, read without running it."""
    try:
        found: list[str] = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # the legacy format and damaged files cannot be scanned
        return []
    return found


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


def _take_weights(checkpoint: Checkpoint, loaded: Any, key: str | None) -> None:
    if not isinstance(loaded, Mapping):
        raise SourceError(
            f"{checkpoint.path} holds a {type(loaded).__name__}, "
            "not a state_dict or a checkpoint dict"
        )
    if key is not None and _all_tensors(loaded):
        raise SourceError(
            f"--key {key!r}: {checkpoint.path} is a plain state_dict with no entries to choose "
            "(--strip-prefix keeps the keys under a prefix)"
        )
    if key is not None:
        weights = _lookup(loaded, key)
        if weights is None:
            raise SourceError(
                f"--key {key!r}: {checkpoint.path} has no such entry "
                f"(it has: {', '.join(map(str, list(loaded)[:12]))})"
            )
        rest = {k: v for k, v in loaded.items() if k != key.split(".")[0]}
        checkpoint.info.insert(0, ("weights from", f"[{key!r}] (--key)"))
    elif _all_tensors(loaded):
        weights, rest = loaded, {}
    else:
        found = _find_weights(loaded)
        if found is None:
            raise SourceError(
                f"{checkpoint.path} holds a dict without a state_dict in it "
                f"(entries: {', '.join(map(str, list(loaded)[:12]))}); name one with --key"
            )
        found_key, weights = found
        rest = {k: v for k, v in loaded.items() if k != found_key}
        others = [k for k, v in rest.items() if isinstance(v, Mapping) and _all_tensors(v) and v]
        note = f" (also there: {', '.join(others)}; choose with --key)" if others else ""
        checkpoint.info.insert(0, ("weights from", f"[{found_key!r}]{note}"))
    checkpoint.tensors = dict(_flatten(weights))
    skipped = [k for k, v in _flatten_all(weights) if not isinstance(v, torch.Tensor)]
    if skipped:
        checkpoint.info.append(("non-tensor entries", short(", ".join(skipped))))
    checkpoint.info.extend(describe_extras(rest))


def _lookup(loaded: Mapping[Any, Any], key: str) -> Mapping[str, Any] | None:
    value: Any = loaded
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, Mapping) and _has_tensors(value) else None


def _all_tensors(mapping: Mapping[Any, Any]) -> bool:
    return all(isinstance(v, torch.Tensor) for _, v in _flatten_all(mapping))


def _has_tensors(mapping: Mapping[Any, Any]) -> bool:
    return any(isinstance(v, torch.Tensor) for _, v in _flatten_all(mapping))


def _find_weights(loaded: Mapping[Any, Any]) -> tuple[str, Mapping[str, Any]] | None:
    for key in WEIGHTS_KEYS:
        value = loaded.get(key)
        if isinstance(value, Mapping) and _has_tensors(value):
            return key, value
    # Otherwise the biggest dict of tensors that is not optimizer state.
    candidates = [
        (sum(v.numel() for _, v in _flatten(value)), str(key), value)
        for key, value in loaded.items()
        if isinstance(value, Mapping) and _has_tensors(value) and not is_optimizer_state(value)
    ]
    if not candidates:
        return None
    _, key, value = max(candidates, key=lambda c: c[0])
    return key, value


def _flatten_all(mapping: Mapping[Any, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts as dotted keys: {'a': {'b': t}} -> ('a.b', t)."""
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _flatten_all(value, dotted + ".")
        else:
            yield dotted, value


def _flatten(mapping: Mapping[Any, Any]) -> Iterator[tuple[str, torch.Tensor]]:
    return ((k, v) for k, v in _flatten_all(mapping) if isinstance(v, torch.Tensor))


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
