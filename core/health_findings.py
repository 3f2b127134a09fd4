"""What the health check makes of its scans: the findings, each a key, its numbers and a line.

Value findings (NaN or Inf, all zero, constant), norm layers at their initial values, equal
tensors stored twice and ties the architecture makes but the file breaks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from modelbrowse.core.health_scan import Scan, full_digest, max_abs_diff

# The last part of a module's name that marks a normalisation layer in a checkpoint's keys:
# LayerNorm, input_layernorm, norm1, ln_f, ln_1, bn1, final_layer_norm.
NORM_NAME = re.compile(r"norm|^(ln|bn)(_\w+|\d+)?$|_(ln|bn)$", re.IGNORECASE)
TRAINED_ONLY = "a problem only in a trained checkpoint"
ROOT = "(root)"  # a finding about the root module, which has no name


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: its kind, the key it is about, its numbers, and the line that says it."""

    kind: str
    key: str
    numbers: dict[str, object]
    text: str

    @property
    def path(self) -> str:
        """The tree's path of what the finding is about ("" for the root)."""
        return "" if self.key == ROOT else self.key


@dataclass
class Tensors:
    """The tensors to scan: each key with a tensor that tells its dtype and shape (on `meta`
    where `read` reads the values), the modules that are norm layers by their class, and the
    ties the architecture makes (None where it is not known)."""

    shapes: dict[str, torch.Tensor]
    read: Callable[[str], torch.Tensor]
    norm_modules: set[str] = field(default_factory=set)
    ties: list[list[str]] | None = None

    def values(self, key: str) -> torch.Tensor:
        """The tensor under `key` with its values (read from the file where on `meta`)."""
        shape = self.shapes[key]
        return shape if not shape.is_meta else self.read(key)


def value_findings(key: str, scan: Scan) -> Iterable[Finding]:
    """NaN or Inf, else all zero or all one value."""
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


def norms_at_init(tensors: Tensors, scans: dict[str, Scan]) -> list[Finding]:
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
            Finding("norm_init", module or ROOT, numbers, f"{said}: as initialised, {TRAINED_ONLY}")
        )
    return found


def duplicates(
    tensors: Tensors, scans: dict[str, Scan], identity: dict[str, object]
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
            buckets.setdefault(full_digest(tensors.values(key)), []).append(key)
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


def broken_ties(
    tensors: Tensors, scans: dict[str, Scan], identity: dict[str, object]
) -> list[Finding]:
    """Names the architecture ties together whose tensors differ in the file."""
    found = []
    for tie in tensors.ties or []:
        present = [key for key in tie if key in scans]
        for other in present[1:]:
            first = present[0]
            if identity[first] == identity[other]:
                continue
            a, b = (tensors.values(key) for key in (first, other))
            if scans[first].sample == scans[other].sample and full_digest(a) == full_digest(b):
                continue  # a tie stored twice
            numbers: dict[str, object] = {"keys": [first, other]}
            if a.shape != b.shape:
                numbers["shapes"] = [list(a.shape), list(b.shape)]
                said = f"shapes {list(a.shape)} and {list(b.shape)}"
            else:
                numbers["max_abs_diff"] = max_abs_diff(a, b)
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
