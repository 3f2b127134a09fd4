"""`--check`: every tensor of a source scanned once, for values that say something went wrong.

Tensors are read one at a time, slice by slice (a mapped file's tensors are views of it, so
only the slice being read is in memory); each finding is a line with the key and its numbers.
The scan of one tensor is `core/health_scan.py`, what the scans add up to
`core/health_findings.py`, the comparison with a reference `core/health_against.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from modelbrowse.core.health_against import Against, frozen_changes
from modelbrowse.core.health_findings import (
    Finding,
    Tensors,
    broken_ties,
    duplicates,
    norms_at_init,
    value_findings,
)
from modelbrowse.core.health_scan import Scan, scan_tensor
from modelbrowse.core.quantized import QuantizedTensor
from modelbrowse.core.sources.base import Source
from modelbrowse.core.stats import unavailable_reason
from modelbrowse.core.tensor_bytes import TensorBytesError, check_files_hold, overlap_reason

__all__ = [
    "Against",
    "CheckCancelled",
    "Finding",
    "HealthReport",
    "Scan",
    "check_source",
    "scan_tensor",
    "tensors_of",
]


class CheckCancelled(Exception):
    """The check was stopped (its screen closed) before it was done."""


@dataclass
class HealthReport:
    """What `check_source` found."""

    scanned: int = 0
    findings: list[Finding] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # key, why
    notes: list[str] = field(default_factory=list)


def check_source(
    source: Source,
    seed: int | None = 0,
    model: nn.Module | None = None,
    against: Against | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> HealthReport:
    """Scan every tensor of `source`: NaN and Inf, all-zero or constant tensors, norm layers at
    their initial values, equal tensors stored twice, and broken ties where the architecture
    is known. `model`, a model of the source already built (the app's), is scanned in place of
    building one; a checkpoint's file is read as it is. With `against`, the parameters a
    recipe froze that differ from the reference's. `cancelled`, asked before each tensor,
    stops the check with CheckCancelled."""
    tensors = tensors_of(source, seed, model)
    report = HealthReport()
    if source.random_values:
        report.notes.append(
            f"the values are a random initialisation (--seed {seed}); --weights or a "
            "checkpoint checks trained ones"
        )
    if tensors.ties is None:
        report.notes.append("ties not checked: no architecture (--arch SOURCE names one)")
    identity = {key: _identity(key, t) for key, t in tensors.shapes.items()}
    hashed = _need_digest(tensors, identity)
    scans: dict[str, Scan] = {}
    first_of: dict[object, str] = {}
    holds = _files_hold(tensors.shapes)
    for key in tensors.shapes:
        if cancelled is not None and cancelled():
            raise CheckCancelled
        same = first_of.setdefault(identity[key], key)
        if same != key:  # one tensor under two names: scanned once
            if same in scans:
                scans[key] = scans[same]
                report.scanned += 1
            continue
        tensor = tensors.values(key)
        reason = _skip_reason(tensor, holds)
        if reason is not None:
            report.skipped.append((key, reason))
            continue
        scans[key] = scan_tensor(tensor, sample=key in hashed)
        report.scanned += 1
    norms = norms_at_init(tensors, scans)
    at_init = {finding.path for finding in norms}
    in_norm = {key for key in scans if key.rpartition(".")[0] in at_init}
    for key, scan in scans.items():
        if first_of[identity[key]] == key:  # a tensor's findings under its first name only
            report.findings += value_findings(key, scan)
    report.findings = [f for f in report.findings if f.kind == "nonfinite" or f.key not in in_norm]
    report.findings += norms
    report.findings += duplicates(tensors, scans, identity)
    if tensors.ties:
        report.findings += broken_ties(tensors, scans, identity)
    if against is not None:
        reference = tensors_of(against.reference, seed)
        changed, notes = frozen_changes(tensors, reference, against.frozen, against.label)
        report.findings += changed
        report.notes += notes
    return report


def tensors_of(source: Source, seed: int | None, model: nn.Module | None = None) -> Tensors:
    """A source's tensors by key: a weights-only checkpoint's as its file holds them (read one
    key at a time where they are not mapped), else those of `model` or of a model built."""
    from modelbrowse.core.sources.checkpoint import CheckpointSource

    if isinstance(source, CheckpointSource) and source.loaded.module is None:
        checkpoint = source.loaded
        load = checkpoint.load_data

        def read(key: str) -> torch.Tensor:
            if load is None:
                return checkpoint.tensors[key]
            name = checkpoint.original_key(key)
            return load([name])[name]  # one key at a time: memory for one tensor

        found = Tensors(dict(checkpoint.tensors), read)
        if source.arch is not None:
            from modelbrowse.core.ties import tied_groups

            built, _ = source.arch.build_structure(seed)
            found.ties = tied_groups(built)
            found.norm_modules = _norm_classes(built)
        return found
    if model is None:
        model = source.build_real(seed)
    # What a checkpoint of it holds: ties under each name, buffers it computes left out.
    state = model.state_dict(keep_vars=True)
    return Tensors(state, state.__getitem__, _norm_classes(model), ties=[])


def _norm_classes(model: nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if "Norm" in type(module).__name__}


def _identity(key: str, tensor: torch.Tensor) -> object:
    """Equal for names of one tensor (a tie in the file or the model), else apart."""
    if tensor.is_meta or isinstance(tensor, QuantizedTensor):
        return key
    return (
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tensor.stride(),
        tensor.dtype,
    )


def _need_digest(tensors: Tensors, identity: dict[str, object]) -> set[str]:
    """Keys whose bytes are hashed: those that share dtype and shape with another tensor (a
    candidate duplicate), and the members of ties."""
    by_kind: dict[tuple[torch.dtype, tuple[int, ...]], dict[object, str]] = {}
    for key, tensor in tensors.shapes.items():
        if tensor.numel() > 1 and not isinstance(tensor, QuantizedTensor):
            kind = (tensor.dtype, tuple(tensor.shape))
            by_kind.setdefault(kind, {}).setdefault(identity[key], key)
    hashed = {key for group in by_kind.values() if len(group) > 1 for key in group.values()}
    for tie in tensors.ties or []:
        hashed.update(key for key in tie if key in tensors.shapes)
    return hashed


def _files_hold(tensors: dict[str, torch.Tensor]) -> bool:
    """Whether every mapped file still holds its tensors' bytes (read once for all)."""
    try:
        check_files_hold({k: t for k, t in tensors.items() if not t.is_meta})
    except TensorBytesError:
        return False
    return True


def _skip_reason(tensor: torch.Tensor, holds: bool) -> str | None:
    if isinstance(tensor, QuantizedTensor):
        return "quantized: its blocks are not checked"
    if not holds:
        return unavailable_reason(tensor)
    if tensor.is_meta:
        return "meta tensor: no data"
    if tensor.layout is not torch.strided:
        return f"{tensor.layout} tensor: not checked"
    if tensor.dtype.is_complex:
        return "complex tensor: not checked"
    return overlap_reason(tensor)
