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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbrowse.core.errors import SourceError, UsageError, first_line
from modelbrowse.core.quantized_weights import QuantizedKeys, config_folder
from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.file_kinds import FileKind, sniff
from modelbrowse.core.reading.records import TensorRecord
from modelbrowse.core.reading.torch_files import (
    TorchContents,
    imports_text,
    read_torch_legacy,
    read_torch_zip,
)
from modelbrowse.core.reading.zip_members import ZIP_READ_ERRORS
from modelbrowse.core.sources.key_rules import (
    CHECKPOINT_SUFFIXES,
    strip_prefix,
    take_weights,
    wrapper_prefix,
)
from modelbrowse.core.sources.training_info import describe_extras
from modelbrowse.core.units import printable


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
    # Quantized layers stored as pieces: shown as one logical weight each.
    quantized_keys: QuantizedKeys | None = None
    # Why nothing may be edited or written (a format shown read-only), or None.
    read_only: str | None = None
    # Quantized weights that no architecture can load (GGUF); they are read-only too.
    quantized: bool = False

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
        from modelbrowse.core.sources.folders import open_folder

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
        _find_quantized(checkpoint)
    return checkpoint


def _find_quantized(checkpoint: Checkpoint) -> None:
    """Quantized layers among the keys, as `core.structure` finds them before torch."""
    from modelbrowse.core.sources.quantized_tensors import quantized_tensors

    found = quantized_tensors(checkpoint.tensors, config_folder(checkpoint.path))
    checkpoint.info.extend(found.rows)
    if found.layouts or found.rows:  # a quantized model, even where no layer fits
        checkpoint.quantized_keys = found


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
        from modelbrowse.core.sources.safetensors_files import open_safetensors

        return open_safetensors([path], map_location)
    if kind is FileKind.GGUF:
        if options.key is not None:
            raise UsageError("--key: a GGUF file holds its tensors at the top; leave out --key")
        from modelbrowse.core.sources.gguf_files import open_gguf

        return open_gguf(path, map_location)
    if kind is FileKind.TORCHSCRIPT:
        return _open_torchscript(path, map_location)
    if kind is FileKind.ONNX:
        from modelbrowse.core.sources.onnx_files import open_onnx

        return open_onnx(path, map_location)
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
    from modelbrowse.core.sources.trusted_pickles import imports_beside, missing_class_problem

    try:
        with warnings.catch_warnings(), imports_beside(path):
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
        problem = missing_class_problem(exc, path)
        if problem is not None:
            raise SourceError(problem) from None
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
    from modelbrowse.core.sources.scripted import scripted_tree

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
    from modelbrowse.core.sources.tensor_mapping import FileMaps, tensors_of

    found = take_weights(loaded, key, str(checkpoint.path), Tensor)
    checkpoint.info[:0] = found.first_rows
    maps = FileMaps()
    records = {k: v for k, v in found.tensors.items() if isinstance(v, TensorRecord)}
    mapped = tensors_of(records, device, maps) if records else {}
    checkpoint.tensors = {
        k: mapped[k] if isinstance(v, TensorRecord) else v for k, v in found.tensors.items()
    }
    checkpoint.info.extend(found.rows)
    checkpoint.info.extend(describe_extras(_shown(found.rest, device, maps)))


def _shown(rest: Mapping[Any, Any], device: str, maps: Any) -> dict[Any, Any]:
    """The entries beside the weights, with the tensor records they show directly mapped."""
    from modelbrowse.core.sources.tensor_mapping import tensors_of

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


def _strip_prefix(checkpoint: Checkpoint, prefix: str) -> None:
    """`--strip-prefix backbone.`: keys under it lose it; the others are dropped."""
    kept, row = strip_prefix(list(checkpoint.tensors), prefix)
    checkpoint.rename(kept)
    checkpoint.info.append(row)


def _strip_wrapper_prefix(checkpoint: Checkpoint, keep: bool) -> None:
    renamed, rows = wrapper_prefix(list(checkpoint.tensors), keep)
    if renamed is not None:
        checkpoint.rename(renamed)
    checkpoint.info.extend(rows)
