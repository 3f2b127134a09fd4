"""A weight file's structure read without torch: the keys' tree shown before torch is imported.

`read_structure` gives, for a safetensors file, a torch state_dict (zip or legacy) or a Hugging
Face folder of safetensors shards, the keys and tensor records the full open will show, in its
order and under its names (wrapper prefixes stripped, `--key`, `--strip-prefix`), with the
information rows it can tell from the bytes alone. It answers None for anything whose tree the
full open would draw differently (an architecture, a comparison, a recipe, `--meta`, a trusted
pickle, TorchScript, a distributed checkpoint, a folder transformers builds) or that it would
refuse: the app then waits for the full open, whose message is the one a user sees.

The rules (where the weights are, prefixes, a Hugging Face folder's files) are those of
`core.sources.key_rules`, which the full open uses too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbrowse.core.errors import SourceError
from modelbrowse.core.quantized_weights import QuantizedKeys, config_folder, quantized_records
from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.adapters import adapter_weights
from modelbrowse.core.reading.file_kinds import FileKind, sniff
from modelbrowse.core.reading.gguf import read_gguf
from modelbrowse.core.reading.gguf_metadata import gguf_format, gguf_rows
from modelbrowse.core.reading.records import TensorRecord
from modelbrowse.core.reading.safetensors_header import read_header
from modelbrowse.core.reading.torch_files import read_torch_legacy, read_torch_zip
from modelbrowse.core.sources.key_rules import (
    CHECKPOINT_SUFFIXES,
    CUSTOM_CODE,
    INSTALL_HINT,
    QUANTIZED_ARCHITECTURE,
    config_file,
    custom_code,
    describe_hf_config,
    hf_weight_files,
    holds_weights,
    is_split_set,
    take_weights,
    transformers_installed,
    wrapper_prefix,
)
from modelbrowse.core.sources.key_rules import strip_prefix as strip_prefix_rule


@dataclass
class Structure:
    """What the tree is drawn from: shown key -> record, in order, and the root's rows."""

    format: str
    tensors: dict[str, TensorRecord] = field(default_factory=dict)
    info: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    # The full open shows rows this does not: those of a training checkpoint's entries beside
    # the weights (epoch, optimizer, ...), told from their values.
    partial: bool = False
    # No two keys view one tensor's bytes (safetensors without aliases), so none are tied.
    untied: bool = False
    # Quantized layers: their pieces' keys shown as one logical weight each.
    quantized_keys: QuantizedKeys | None = None

    def rename(self, renamed: dict[str, str]) -> None:
        """Keep only the keys in `renamed` (old -> new), in order, under their new names."""
        self.tensors = {new: self.tensors[old] for old, new in renamed.items()}

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
    except (NotShown, SourceError, ReadError, OSError, RecursionError, MemoryError):
        return None


def _read(
    spec: str, key: str | None, keep_prefix: bool, strip_prefix: str | None, keys_only: bool
) -> Structure:
    if not spec or spec.startswith("hf:"):
        raise NotShown
    path = Path(spec).expanduser()
    if not path.exists():
        raise NotShown
    if path.is_dir() and adapter_weights(path) is not None:
        if key is not None or keep_prefix or strip_prefix:
            raise NotShown  # refused by the full open
        return _read_adapter(path)
    config = config_file(path)
    if config is not None and (path.is_file() or not holds_weights(path)):
        raise NotShown  # a config alone: an architecture
    structure = _read_folder(path, key) if path.is_dir() else _read_file(path, key)
    renamed, rows = wrapper_prefix(list(structure.tensors), keep_prefix)
    if renamed is not None:
        structure.rename(renamed)
    structure.info.extend(rows)
    if strip_prefix:
        kept, row = strip_prefix_rule(list(structure.tensors), strip_prefix)
        structure.rename(kept)
        structure.info.append(row)
    _find_quantized(structure, path)
    if path.is_dir() and structure.format.startswith("Hugging Face") and not keys_only:
        _architecture_row(structure, path)
    if not structure.tensors:
        raise NotShown
    return structure


# --- folders -----------------------------------------------------------------------------------


def _read_folder(path: Path, key: str | None) -> Structure:
    if (path / ".metadata").is_file():
        raise NotShown  # a distributed checkpoint
    weights = hf_weight_files(path)
    if not weights:
        candidates = [
            p for p in sorted(path.iterdir()) if p.name.lower().endswith(CHECKPOINT_SUFFIXES)
        ]
        candidates = [p for p in candidates if p.is_file()]
        if len(candidates) != 1 and not is_split_set(candidates):
            raise NotShown
        return _read_file(candidates[0], key)
    if key is not None or not all(sniff(f) is FileKind.SAFETENSORS for f in weights):
        raise NotShown
    structure = _read_safetensors(weights)
    structure.format = f"Hugging Face folder ({structure.format})"
    config = path / "config.json"
    if config.is_file():
        structure.info[:0] = describe_hf_config(config)
        structure.files.append(config)
    return structure


def _find_quantized(structure: Structure, path: Path) -> None:
    """Quantized layers among the shown keys, as `core.sources.files` finds them."""
    found = quantized_records(structure.tensors, config_folder(path))
    structure.info.extend(found.rows)
    if found.layouts or found.rows:  # a quantized model, even where no layer fits
        structure.quantized_keys = found


def _architecture_row(structure: Structure, folder: Path) -> None:
    """A Hugging Face folder's architecture, as `core.sources.checkpoint` decides it."""
    config = config_file(folder)
    if config is None:
        return
    if structure.quantized_keys is not None:
        structure.info.append(("architecture", QUANTIZED_ARCHITECTURE))
    elif custom_code(config):
        structure.info.append(("architecture", f"from the keys: {CUSTOM_CODE}"))
    elif transformers_installed():
        raise NotShown  # transformers builds it: its classes, not the keys' groups
    else:
        structure.info.append(
            ("architecture", f"from the keys; {INSTALL_HINT} builds it from config.json")
        )


def _read_adapter(folder: Path) -> Structure:
    """A PEFT adapter alone, as `core.sources.adapters` shows it without a base."""
    from modelbrowse.core.reading.adapters import read_adapter_config
    from modelbrowse.core.sources.adapter_layout import (
        adapter_layout,
        adapter_rows,
        base_text,
        cached_base,
    )

    config = read_adapter_config(folder)
    if cached_base(config) is not None:
        raise NotShown  # the full open shows the base's tree
    weights = adapter_weights(folder)
    assert weights is not None
    inner = _read_file(weights, None)
    if inner.partial:
        raise NotShown
    layout = adapter_layout(config, {k: r.shape for k, r in inner.tensors.items()})
    info = adapter_rows(layout, base_text(config)) + inner.info
    tensors = {layout.renamed[k]: r for k, r in inner.tensors.items()}
    files = [weights, folder / "adapter_config.json"]
    # partial: `--print` lists the adapted modules' update norms, which need the full open.
    return Structure(f"PEFT adapter ({inner.format})", tensors, info, files, partial=True)


# --- files -------------------------------------------------------------------------------------


def _read_file(path: Path, key: str | None) -> Structure:
    kind = sniff(path)
    if kind is FileKind.SAFETENSORS:
        if key is not None:
            raise NotShown
        return _read_safetensors([path])
    if kind is FileKind.ONNX:
        return _read_onnx(path, key)
    if kind is FileKind.GGUF:
        if key is not None:
            raise NotShown
        return _read_gguf(path)
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


def _read_onnx(path: Path, key: str | None) -> Structure:
    from modelbrowse.core.reading.onnx_model import FORMAT, read_onnx

    if key is not None:
        raise NotShown
    model = read_onnx(path)
    # Two initializers are one tensor only where external data places them at one offset.
    starts = {(r.storage.file, r.storage.start) for r in model.tensors.values() if r.numel}
    untied = len(starts) == sum(1 for r in model.tensors.values() if r.numel)
    return Structure(
        FORMAT, dict(model.tensors), list(model.rows), list(model.files), untied=untied
    )


def _read_safetensors(paths: list[Path]) -> Structure:
    # A safetensors file's byte ranges never overlap, and a view of no bytes ties to nothing:
    # only the app's aliases make two keys one tensor.
    structure = Structure("safetensors", files=list(paths), untied=True)
    for path in paths:
        header = read_header(path)
        structure.tensors.update(header.tensors)
        for alias, key in header.aliases.items():
            if alias not in structure.tensors:
                structure.tensors[alias] = header.tensors[key]
                structure.untied = False
        rows = [(f"metadata {name}", value) for name, value in header.metadata.items()]
        for row in rows + header.info:
            if row not in structure.info:
                structure.info.append(row)
    return structure


def _read_gguf(path: Path) -> Structure:
    # Tensors of a GGUF file never share bytes (its reader refuses overlapping data).
    contents = read_gguf(path)
    info = gguf_rows(contents)
    return Structure(gguf_format(contents), contents.tensors, info, contents.files, untied=True)


def _take_weights(structure: Structure, loaded: Any, key: str | None, where: str) -> None:
    """Where a training checkpoint keeps its weights, as the full open finds them."""
    found = take_weights(loaded, key, where)
    structure.info[:0] = found.first_rows
    structure.tensors = found.tensors
    structure.info.extend(found.rows)
    structure.partial = bool(found.rest)
