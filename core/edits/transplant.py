"""Transplanting: weights from another checkpoint copied into a subtree through a key mapping.

The source is read only through the project's reading layer (`open_checkpoint`): a file that
holds pickled objects is refused unless the user trusts it. Keys map by one prefix pair
(`backbone.` -> `features.`), prefilled by the pair that matches the most keys with equal
shapes; the report says what is copied, missing, unexpected, of another shape (never copied)
or cast to the destination's dtype, before anything changes. The recipe records the source's
path and sha256, and a replay refuses a file that changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from modelbrowse.core.edits.base import Edit, EditError, is_module_path
from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.paths import get_module
from modelbrowse.core.saving.hashing import file_sha256
from modelbrowse.core.tensor_bytes import check_files_hold
from modelbrowse.core.units import human_bytes

# How deep below the root (source) or the subtree (destination) the best match looks.
PREFIX_DEPTH = 3


class TransplantError(EditError):
    """A transplant that cannot be made: the source, the mapping or the destination."""


@dataclass(frozen=True)
class PrefixMap:
    """Source keys starting with `source` go to `target` + the rest of the key."""

    source: str = ""
    target: str = ""

    def map(self, key: str) -> str | None:
        if not key.startswith(self.source):
            return None
        return self.target + key[len(self.source) :]

    def text(self) -> str:
        return f"{self.source!r} -> {self.target!r}"


@dataclass(frozen=True)
class TransplantSource:
    """A checkpoint read for its tensors, with the sha256 of its bytes."""

    path: Path
    sha256: str
    format: str
    tensors: dict[str, torch.Tensor]
    files: tuple[Path, ...]


@dataclass(frozen=True)
class TransplantReport:
    """What a mapping copies, before anything is copied. Pairs are (source key, destination)."""

    mapping: PrefixMap
    copied: tuple[tuple[str, str], ...]
    bytes: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, str, tuple[int, ...], tuple[int, ...]], ...]
    cast: tuple[tuple[str, str, str], ...]  # destination key, source dtype, destination dtype

    def summary(self) -> str:
        text = f"copied {len(self.copied)} tensors ({human_bytes(self.bytes)})"
        counts = [
            (len(self.missing), "missing"),
            (len(self.unexpected), "unexpected"),
            (len(self.mismatched), "of another shape"),
            (len(self.cast), "cast"),
        ]
        return ", ".join([text, *(f"{n} {what}" for n, what in counts if n)])

    def lines(self, limit: int = 6) -> list[str]:
        """The report for the dialog: each list with its first few entries."""

        def some(items: list[str]) -> str:
            more = f", … {len(items) - limit} more" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        lines = [f"copied: {len(self.copied)} tensors, {human_bytes(self.bytes)}"]
        lines.append(f"missing (no source): {len(self.missing)} {some(list(self.missing))}")
        lines.append(
            f"unexpected (no destination): {len(self.unexpected)} {some(list(self.unexpected))}"
        )
        shapes = [f"{d} {list(a)} vs {list(b)}" for _, d, a, b in self.mismatched]
        lines.append(f"shape mismatches (not copied): {len(shapes)} {some(shapes)}")
        casts = [f"{d} {a}->{b}" for d, a, b in self.cast]
        lines.append(f"cast to the destination dtype: {len(casts)} {some(casts)}")
        return lines


# --- the source ------------------------------------------------------------------------------


def open_source(spec: str, *, trust: bool = False, expected: str = "") -> TransplantSource:
    """Read a checkpoint file or folder for transplanting; with `expected`, its sha256 must be
    that. Every problem is one line."""
    from modelbrowse.core.sources.files import CheckpointOptions, open_checkpoint

    path = Path(spec).expanduser()
    if not spec.strip():
        raise TransplantError("name a checkpoint file or folder to copy weights from")
    if not path.exists():
        raise TransplantError(f"no such file or directory: {spec}")
    try:
        checkpoint = open_checkpoint(str(path), CheckpointOptions(trust_pickle=trust))
        if checkpoint.quantized or checkpoint.quantized_keys is not None:
            raise TransplantError(f"{spec} holds quantized weights: they cannot be copied")
        if checkpoint.module is not None:
            tensors = dict(checkpoint.module.state_dict(keep_vars=False))
        else:
            tensors = checkpoint.read_all()
    except TransplantError:
        raise
    except ModelBrowseError as exc:
        raise TransplantError(str(exc)) from None
    files = tuple(f for f in (checkpoint.files or [path]) if f.is_file())
    sha256 = _sha256(path, files)
    if expected and sha256 != expected:
        raise TransplantError(
            f"{spec} changed since the transplant was recorded: its sha256 is {sha256}, "
            f"the recipe says {expected}"
        )
    check_files_hold(tensors)  # mapped: a file cut since it was read is an error, not a fault
    return TransplantSource(path.resolve(), sha256, checkpoint.format, tensors, files)


def _sha256(path: Path, files: tuple[Path, ...]) -> str:
    """A file's own sha256; a folder's is that of its files' `sha256sum` lines, by name."""
    try:
        if path.is_file():
            return file_sha256(path)
        listing = "".join(
            f"{file_sha256(f)}  {f.relative_to(path).as_posix()}\n"
            for f in sorted(files, key=lambda f: f.relative_to(path).as_posix())
        )
    except (OSError, ValueError) as exc:
        raise TransplantError(f"cannot read {path}: {exc}") from None
    return hashlib.sha256(listing.encode()).hexdigest()


# --- the destination and the plan ------------------------------------------------------------


def destination_tensors(model: nn.Module, path: str) -> dict[str, torch.Tensor]:
    """The subtree's parameters and persistent buffers by state_dict key, aliases included."""
    if not is_module_path(model, path):
        raise TransplantError(f"{path} is a tensor: transplant into a module")
    found: dict[str, torch.Tensor] = {}
    subtree = get_module(model, path)
    for prefix, module in subtree.named_modules(prefix=path, remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        for name, param in module._parameters.items():
            if param is not None:
                found[dot + name] = param
        for name, buffer in module._buffers.items():
            if buffer is not None and name not in module._non_persistent_buffers_set:
                found[dot + name] = buffer
    return found


def plan(
    model: nn.Module, path: str, source: TransplantSource, mapping: PrefixMap
) -> TransplantReport:
    """What `mapping` would copy from `source` into the subtree at `path`; changes nothing."""
    within = f"{path}." if path else ""
    if not mapping.target.startswith(within) and mapping.target.rstrip(".") != path:
        raise TransplantError(f"the destination prefix {mapping.target!r} is outside {path}")
    destination = destination_tensors(model, path)
    copied: list[tuple[str, str]] = []
    size = 0
    unexpected: list[str] = []
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = []
    cast: list[tuple[str, str, str]] = []
    reached: set[str] = set()
    for key, tensor in source.tensors.items():
        target = mapping.map(key)
        found = destination.get(target) if target is not None else None
        if target is None or found is None:
            unexpected.append(key)
            continue
        reached.add(target)
        if tuple(tensor.shape) != tuple(found.shape):
            mismatched.append((key, target, tuple(tensor.shape), tuple(found.shape)))
            continue
        copied.append((key, target))
        size += found.numel() * found.element_size()
        if tensor.dtype != found.dtype:
            cast.append((target, _dtype(tensor.dtype), _dtype(found.dtype)))
    # A tied key (lm_head.weight of a Llama, absent from its files) is reached through its twin.
    reached_tensors = {id(destination[key]) for key in reached}
    missing = tuple(
        k for k in destination if k not in reached and id(destination[k]) not in reached_tensors
    )
    return TransplantReport(
        mapping, tuple(copied), size, missing, tuple(unexpected), tuple(mismatched), tuple(cast)
    )


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def best_mapping(model: nn.Module, path: str, source: TransplantSource) -> PrefixMap:
    """The prefix pair under which the most source keys land on destination keys of the same
    shape; among equals, the first found from the widest prefixes."""
    destination = destination_tensors(model, path)
    src = {k: tuple(t.shape) for k, t in source.tensors.items()}
    dst = {k: tuple(t.shape) for k, t in destination.items()}
    within = f"{path}." if path else ""
    src_groups = _groups(src, "", PREFIX_DEPTH)
    dst_groups = _groups(dst, within, PREFIX_DEPTH)
    best, found = 0, PrefixMap("", within)
    for source_prefix, rel_src in src_groups:
        if len(rel_src) <= best:
            break
        for target_prefix, rel_dst in dst_groups:
            if len(rel_dst) <= best:
                break
            small, large = sorted((rel_src, rel_dst), key=len)
            score = sum(1 for k, shape in small.items() if large.get(k) == shape)
            if score > best:
                best, found = score, PrefixMap(source_prefix, target_prefix)
    return found


def _groups(
    shapes: dict[str, tuple[int, ...]], root: str, depth: int
) -> list[tuple[str, dict[str, tuple[int, ...]]]]:
    """Each dotted prefix (from `root`, up to `depth` parts more) with its keys' rests, the
    prefixes with most keys first."""
    groups: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        if not key.startswith(root):
            continue
        parts = key[len(root) :].split(".")
        for cut in range(min(depth, len(parts) - 1) + 1):
            prefix = root + "".join(f"{p}." for p in parts[:cut])
            groups.setdefault(prefix, {})[key[len(prefix) :]] = shape
    return sorted(groups.items(), key=lambda item: -len(item[1]))


# --- the edit --------------------------------------------------------------------------------


@dataclass
class Transplant(Edit):
    """Copy the tensors a prefix mapping matches from a checkpoint into the subtree at `path`."""

    path: str
    source: str
    sha256: str = ""
    source_prefix: str = ""
    target_prefix: str = ""
    op: ClassVar[str] = "transplant"
    trust: bool = field(default=False, repr=False)  # never recorded: a recipe cannot ask it
    report: TransplantReport | None = field(default=None, repr=False)
    _read: TransplantSource | None = field(default=None, repr=False)
    _saved: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list, repr=False)

    @classmethod
    def of(cls, path: str, source: TransplantSource, mapping: PrefixMap) -> Transplant:
        """The edit for a source already read (by the dialog that showed its report)."""
        edit = cls(path, str(source.path), source.sha256, mapping.source, mapping.target)
        edit._read = source
        return edit

    @property
    def mapping(self) -> PrefixMap:
        return PrefixMap(self.source_prefix, self.target_prefix)

    def apply(self, model: nn.Module) -> None:
        source = self._read
        if source is None:
            source = open_source(self.source, trust=self.trust, expected=self.sha256)
        report = plan(model, self.path, source, self.mapping)
        if not report.copied:
            raise TransplantError(
                f"the mapping {self.mapping.text()} matches no tensor of {self.path or 'the model'}"
                f" with the same shape ({len(source.tensors)} source keys)"
            )
        destination = destination_tensors(model, self.path)
        targets = {d: destination[d] for _, d in report.copied}
        if any(t.is_meta for t in targets.values()):
            raise TransplantError(f"{self.path} has no values yet to copy into")
        check_files_hold(targets)  # the old values are kept for undo: read from a mapped file
        unique = {id(t): t for t in targets.values()}
        saved = [(t, t.detach().clone()) for t in unique.values()]
        with torch.no_grad():
            for key, target in report.copied:
                destination[target].copy_(source.tensors[key])
        self._read, self.sha256, self.report, self._saved = source, source.sha256, report, saved

    def undo(self, model: nn.Module) -> None:
        with torch.no_grad():
            for tensor, saved in reversed(self._saved):
                tensor.copy_(saved)

    def touched(self) -> list[str]:
        return []  # values change in place; no count does

    def describe(self) -> str:
        where = self.path or "the model"
        text = f"transplant {Path(self.source).name} into {where} ({self.mapping.text()})"
        return f"{text}: {self.report.summary()}" if self.report is not None else text

    def as_code(self) -> list[str]:
        files = self._read.files if self._read is not None else (Path(self.source),)
        weights = [f for f in files if f.suffix != ".json"]
        lines = [f"# {self.source} (sha256 {self.sha256})"]
        lines += _load_code(weights)
        target = "target = dict(model.named_parameters(remove_duplicate=False))"
        lines += [
            target,
            "target.update(model.named_buffers(remove_duplicate=False))",
            "with torch.no_grad():",
            "    for key, value in source.items():",
            f"        name = {self.target_prefix!r} + key[{len(self.source_prefix)}:]",
            f"        inside = name.startswith({self.path + '.' if self.path else ''!r})",
            f"        if key.startswith({self.source_prefix!r}) and inside and name in target:",
            "            if target[name].shape == value.shape:",
            "                target[name].copy_(value)",
        ]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "path": self.path,
            "source": self.source,
            "sha256": self.sha256,
            "source_prefix": self.source_prefix,
            "target_prefix": self.target_prefix,
        }


def _load_code(files: list[Path]) -> list[str]:
    """Python that reads the source's tensors into `source`."""
    lines = ["source = {}"]
    for file in files:
        if file.suffix == ".safetensors":
            lines.insert(0, "from safetensors.torch import load_file")
            lines.append(f"source.update(load_file({str(file)!r}))")
        else:
            lines.append(
                f"source.update(torch.load({str(file)!r}, map_location='cpu', weights_only=True))"
            )
    return list(dict.fromkeys(lines))
