"""`--check`: every tensor of a source scanned once, for values that say something went wrong.

Tensors are read one at a time, slice by slice (a mapped file's tensors are views of it, so
only the slice being read is in memory); each finding is a line with the key and its numbers.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from modelbrowse.core.quantized import QuantizedTensor
from modelbrowse.core.sources.base import Source
from modelbrowse.core.stats import CHUNK_ELEMENTS, unavailable_reason
from modelbrowse.core.tensor_bytes import TensorBytesError, check_files_hold, overlap_reason

# The last part of a module's name that marks a normalisation layer in a checkpoint's keys:
# LayerNorm, input_layernorm, norm1, ln_f, ln_1, bn1, final_layer_norm.
NORM_NAME = re.compile(r"norm|^(ln|bn)(_\w+|\d+)?$|_(ln|bn)$", re.IGNORECASE)
# The sample that tells tensors of one dtype and shape apart before all their bytes are hashed.
SAMPLE_RUNS = 64
SAMPLE_BYTES = 64
TRAINED_ONLY = "a problem only in a trained checkpoint"


@dataclass(frozen=True, slots=True)
class Scan:
    """What one pass over a tensor's values found."""

    numel: int
    floating: bool = True
    nan: int = 0
    inf: int = 0
    first_bad: tuple[int, ...] | None = None  # where the first NaN or Inf is
    value: float | None = None  # the one value every element has, or None
    sample: bytes | None = None  # a hash of sampled bytes: apart, the tensors differ


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: its kind, the key it is about, its numbers, and the line that says it."""

    kind: str
    key: str
    numbers: dict[str, object]
    text: str


@dataclass
class HealthReport:
    """What `check_source` found."""

    scanned: int = 0
    findings: list[Finding] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # key, why
    notes: list[str] = field(default_factory=list)


def scan_tensor(tensor: torch.Tensor, sample: bool = False) -> Scan:
    """NaN and Inf counts, the one value (if every element has it) and, with `sample`, a
    hash of sampled bytes; read CHUNK_ELEMENTS at a time."""
    values = tensor.detach()
    numel = values.numel()
    if numel == 0:
        return Scan(0, values.dtype.is_floating_point, sample=b"" if sample else None)
    flat = values.reshape(-1)  # a view when contiguous; else a copy of this tensor alone
    floating = values.dtype.is_floating_point
    first = flat[:1]
    same = True
    nan = inf = 0
    first_bad: tuple[int, ...] | None = None
    for start in range(0, numel, CHUNK_ELEMENTS):
        chunk = flat[start : start + CHUNK_ELEMENTS]
        # A sum is one fast pass, finite unless a value is not (or the sum overflows).
        if floating and not math.isfinite(float(chunk.sum(dtype=_sum_dtype(chunk.dtype)))):
            nans, infs = torch.isnan(chunk), torch.isinf(chunk)
            nan += int(nans.sum())
            inf += int(infs.sum())
            if first_bad is None and bool((nans | infs).any()):
                where = start + int(torch.nonzero(nans | infs)[0, 0])
                first_bad = tuple(int(i) for i in np.unravel_index(where, tuple(values.shape)))
        if same:
            same = bool((chunk == first).all())
    value = float(first.item()) if same and not first.dtype.is_complex else None
    sampled = _sampled(flat) if sample else None
    return Scan(numel, floating, nan, inf, first_bad, value, sampled)


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype.itemsize < 4 else dtype


def _sampled(flat: torch.Tensor) -> bytes:
    """A hash of SAMPLE_RUNS runs of SAMPLE_BYTES spread over the bytes: equal tensors have
    equal samples, and tensors of different values almost never do."""
    raw = flat.contiguous().view(torch.uint8)
    hasher = hashlib.blake2b(digest_size=16)
    size = raw.numel()
    if size <= SAMPLE_RUNS * SAMPLE_BYTES:
        hasher.update(raw.cpu().numpy().data)
    else:
        for run in range(SAMPLE_RUNS):
            start = run * (size - SAMPLE_BYTES) // (SAMPLE_RUNS - 1)
            hasher.update(raw[start : start + SAMPLE_BYTES].cpu().numpy().data)
    return hasher.digest()


def full_digest(tensor: torch.Tensor) -> bytes:
    """A hash of every byte, read CHUNK_ELEMENTS at a time."""
    flat = tensor.detach().reshape(-1)
    hasher = hashlib.blake2b(digest_size=16)
    for start in range(0, flat.numel(), CHUNK_ELEMENTS):
        chunk = flat[start : start + CHUNK_ELEMENTS].contiguous()
        hasher.update(chunk.view(torch.uint8).cpu().numpy().data)
    return hasher.digest()


@dataclass
class _Tensors:
    """The tensors to scan: each key with a tensor that tells its dtype and shape (on `meta`
    where `read` reads the values), the modules that are norm layers by their class, and the
    ties the architecture makes (None where it is not known)."""

    shapes: dict[str, torch.Tensor]
    read: Callable[[str], torch.Tensor]
    norm_modules: set[str] = field(default_factory=set)
    ties: list[list[str]] | None = None


def check_source(source: Source, seed: int | None = 0) -> HealthReport:
    """Scan every tensor of `source`: NaN and Inf, all-zero or constant tensors, norm layers at
    their initial values, equal tensors stored twice, and broken ties where the architecture
    is known."""
    tensors = _tensors_of(source, seed)
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
    for key, shape in tensors.shapes.items():
        same = first_of.setdefault(identity[key], key)
        if same != key:  # one tensor under two names: scanned once
            if same in scans:
                scans[key] = scans[same]
                report.scanned += 1
            continue
        tensor = shape if not shape.is_meta else tensors.read(key)
        reason = _skip_reason(tensor, holds)
        if reason is not None:
            report.skipped.append((key, reason))
            continue
        scans[key] = scan_tensor(tensor, sample=key in hashed)
        report.scanned += 1
    norms = _norms_at_init(tensors, scans)
    at_init = {_module_of(finding) for finding in norms}
    in_norm = {key for key in scans if key.rpartition(".")[0] in at_init}
    for key, scan in scans.items():
        if first_of[identity[key]] == key:  # a tensor's findings under its first name only
            report.findings += _value_findings(key, scan)
    report.findings = [f for f in report.findings if f.kind == "nonfinite" or f.key not in in_norm]
    report.findings += norms
    report.findings += _duplicates(tensors, scans, identity)
    if tensors.ties:
        report.findings += _broken_ties(tensors, scans, identity)
    return report


def _tensors_of(source: Source, seed: int | None) -> _Tensors:
    from modelbrowse.core.sources.checkpoint import CheckpointSource

    if isinstance(source, CheckpointSource) and source.loaded.module is None:
        checkpoint = source.loaded
        load = checkpoint.load_data

        def read(key: str) -> torch.Tensor:
            if load is None:
                return checkpoint.tensors[key]
            name = checkpoint.original_key(key)
            return load([name])[name]  # one key at a time: memory for one tensor

        found = _Tensors(dict(checkpoint.tensors), read)
        if source.arch is not None:
            from modelbrowse.core.ties import tied_groups

            model, _ = source.arch.build_structure(seed)
            found.ties = tied_groups(model)
            found.norm_modules = _norm_classes(model)
        return found
    model = source.build_real(seed)
    # What a checkpoint of it holds: ties under each name, buffers it computes left out.
    tensors = model.state_dict(keep_vars=True)
    return _Tensors(tensors, tensors.__getitem__, _norm_classes(model), ties=[])


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


def _need_digest(tensors: _Tensors, identity: dict[str, object]) -> set[str]:
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


def _value_findings(key: str, scan: Scan) -> Iterable[Finding]:
    if scan.nan or scan.inf:
        where = list(scan.first_bad or ())
        yield Finding(
            "nonfinite",
            key,
            {"nan": scan.nan, "inf": scan.inf, "numel": scan.numel, "first_index": where},
            f"{scan.nan:,} NaN and {scan.inf:,} Inf of {scan.numel:,} values, the first at {where}",
        )
    elif scan.value is not None and scan.numel > 1 and scan.floating:
        if scan.value == 0:
            yield Finding("zero", key, {"numel": scan.numel}, f"all {scan.numel:,} values are 0")
        else:
            yield Finding(
                "constant",
                key,
                {"numel": scan.numel, "value": scan.value},
                f"all {scan.numel:,} values are {scan.value:g}",
            )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _norms_at_init(tensors: _Tensors, scans: dict[str, Scan]) -> list[Finding]:
    """Norm layers whose weight is all ones and bias (where there is one) all zeros."""
    modules = dict.fromkeys(key.rpartition(".")[0] for key in scans)
    found = []
    for module in modules:
        last = module.rpartition(".")[2]
        if module not in tensors.norm_modules and not NORM_NAME.search(last):
            continue
        weight = scans.get(_join(module, "weight"))
        bias = scans.get(_join(module, "bias"))
        if weight is None or not weight.floating or weight.value != 1:
            continue
        if _join(module, "bias") in tensors.shapes and (bias is None or bias.value != 0):
            continue
        numbers: dict[str, object] = {"weight": weight.numel, "bias": bias.numel if bias else 0}
        said = f"weight all 1 ({weight.numel:,} values)"
        if bias is not None:
            said += f", bias all 0 ({bias.numel:,} values)"
        found.append(
            Finding(
                "norm_init", module or "(root)", numbers, f"{said}: as initialised, {TRAINED_ONLY}"
            )
        )
    return found


def _module_of(finding: Finding) -> str:
    return "" if finding.key == "(root)" else finding.key


def _duplicates(
    tensors: _Tensors, scans: dict[str, Scan], identity: dict[str, object]
) -> list[Finding]:
    """Tensors of equal dtype, shape and bytes in storages of their own. Constant tensors are
    left out (equal because constant, and said so already), and the members of one tie.
    Only tensors whose samples agree are read again, to hash every byte."""
    seen: set[object] = set()
    candidates: dict[tuple[torch.dtype, tuple[int, ...], bytes], list[str]] = {}
    for key, scan in scans.items():
        if identity[key] in seen or scan.sample is None or scan.value is not None:
            continue
        seen.add(identity[key])
        shape = tensors.shapes[key]
        candidates.setdefault((shape.dtype, tuple(shape.shape), scan.sample), []).append(key)
    found = []
    for (dtype, _, _), alike in candidates.items():
        if len(alike) < 2:
            continue
        buckets: dict[bytes, list[str]] = {}
        for key in alike:
            buckets.setdefault(full_digest(_values(tensors, key)), []).append(key)
        for keys in buckets.values():
            if len(keys) < 2 or any(set(keys) <= set(tie) for tie in tensors.ties or []):
                continue
            numel = scans[keys[0]].numel
            dtype_name = str(dtype).removeprefix("torch.")
            found.append(
                Finding(
                    "duplicate",
                    keys[0],
                    {"keys": keys, "numel": numel, "dtype": dtype_name},
                    f"the same {numel:,} {dtype_name} values stored again under "
                    + ", ".join(keys[1:]),
                )
            )
    return found


def _broken_ties(
    tensors: _Tensors, scans: dict[str, Scan], identity: dict[str, object]
) -> list[Finding]:
    """Names the architecture ties together whose tensors differ in the file."""
    found = []
    for tie in tensors.ties or []:
        present = [key for key in tie if key in scans]
        for other in present[1:]:
            first = present[0]
            if identity[first] == identity[other]:
                continue
            a, b = (_values(tensors, key) for key in (first, other))
            if scans[first].sample == scans[other].sample and full_digest(a) == full_digest(b):
                continue  # a tie stored twice
            numbers: dict[str, object] = {"keys": [first, other]}
            if a.shape != b.shape:
                numbers["shapes"] = [list(a.shape), list(b.shape)]
                said = f"shapes {list(a.shape)} and {list(b.shape)}"
            else:
                numbers["max_abs_diff"] = _max_abs_diff(a, b)
                said = f"largest difference {numbers['max_abs_diff']:g}"
            found.append(
                Finding(
                    "tie_broken",
                    first,
                    numbers,
                    f"tied to {other} in the architecture but different in the file: {said}",
                )
            )
    return found


def _values(tensors: _Tensors, key: str) -> torch.Tensor:
    shape = tensors.shapes[key]
    return shape if not shape.is_meta else tensors.read(key)


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    left, right = a.detach().reshape(-1), b.detach().reshape(-1)
    largest = 0.0
    for start in range(0, left.numel(), CHUNK_ELEMENTS):
        end = start + CHUNK_ELEMENTS
        gap = (left[start:end].double() - right[start:end].double().to(left.device)).abs()
        largest = max(largest, float(gap.max()))
    return largest
