"""Compare two state_dicts key by key: only in one, shape or dtype changed, values changed, equal.

Values are compared in chunks, so two 7B checkpoints are compared without holding a float copy of
either. The relative difference is scale-relative: max |a - b| divided by max |a|.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from modelbrowse.core.bitwise import bitwise_equal
from modelbrowse.core.nodes import quantization_of
from modelbrowse.core.quantized import QuantizedTensor
from modelbrowse.core.tensor_bytes import check_files_hold
from modelbrowse.core.units import printable, shape_text

if TYPE_CHECKING:
    from modelbrowse.core.sources.base import Source

CHUNK = 1 << 22


class Change(enum.Enum):
    """How one key differs; the value is the marker shown in the tree and in text."""

    ONLY_A = "-"
    ONLY_B = "+"
    SHAPE = "!"
    DTYPE = "≠"
    VALUES = "~"
    EQUAL = "="


CHANGE_WORDS = {
    Change.ONLY_A: "only in A",
    Change.ONLY_B: "only in B",
    Change.SHAPE: "shape changed",
    Change.DTYPE: "dtype changed",
    Change.VALUES: "values changed",
    Change.EQUAL: "equal",
}


@dataclass(frozen=True)
class KeyDiff:
    """One key's comparison."""

    key: str
    change: Change
    detail: str = ""
    max_abs: float | None = None
    max_rel: float | None = None

    def line(self) -> str:
        text = f"{self.change.value} {printable(self.key)}"
        return f"{text}  {self.detail}" if self.detail else text


def diff_states(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> list[KeyDiff]:
    """Every key of A then the keys only in B, each with its change."""
    # Where each tensor is mapped from, looked up once for all; each pair is checked again
    # just before its values are read (a file stat each).
    check_files_hold(dict(a))
    check_files_hold(dict(b))
    out: list[KeyDiff] = []
    for key, left in a.items():
        right = b.get(key)
        if right is None:
            out.append(KeyDiff(key, Change.ONLY_A, _describe(left)))
        else:
            out.append(compare_tensors(key, left, right))
    out.extend(KeyDiff(k, Change.ONLY_B, _describe(v)) for k, v in b.items() if k not in a)
    return out


def compare_tensors(key: str, left: torch.Tensor, right: torch.Tensor) -> KeyDiff:
    if tuple(left.shape) != tuple(right.shape):
        detail = f"{shape_text(tuple(left.shape))} -> {shape_text(tuple(right.shape))}"
        return KeyDiff(key, Change.SHAPE, detail)
    if left.is_meta or right.is_meta:
        return KeyDiff(key, Change.EQUAL, "meta tensor: values not compared")
    check_files_hold({key: left})  # both read: a file truncated since it was mapped is an error
    check_files_hold({key: right})
    if left.dtype != right.dtype or _dtype(left) != _dtype(right):
        max_abs, max_rel = _difference(left, right)
        detail = f"{_dtype(left)} -> {_dtype(right)}, {_numbers(max_abs, max_rel)}"
        return KeyDiff(key, Change.DTYPE, detail, max_abs, max_rel)
    if _same_bytes(left, right):
        return KeyDiff(key, Change.EQUAL)
    max_abs, max_rel = _difference(left, right)
    return KeyDiff(key, Change.VALUES, _numbers(max_abs, max_rel), max_abs, max_rel)


def _chunks(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    if isinstance(tensor, QuantizedTensor):  # its values dequantized, CHUNK at a time
        blocks, step = tensor.numel() // tensor.block_size, CHUNK // tensor.block_size
        for first in range(0, blocks, step):
            yield tensor.blocks(first, min(first + step, blocks))
        return
    flat = tensor.detach().reshape(-1)
    for start in range(0, flat.numel(), CHUNK):
        yield flat[start : start + CHUNK]


def _same_bytes(left: torch.Tensor, right: torch.Tensor) -> bool:
    """Bit for bit, so NaN equals NaN and -0.0 differs from 0.0."""
    pairs = zip(_chunks(left), _chunks(right), strict=True)
    return all(bitwise_equal(x, y) for x, y in pairs)


def _difference(left: torch.Tensor, right: torch.Tensor) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |a|), NaN where either side is NaN."""
    max_abs = 0.0
    scale = 0.0
    for x, y in zip(_chunks(left), _chunks(right), strict=True):
        x64 = x.cpu().to(torch.float64) if not x.is_complex() else x.cpu().abs().to(torch.float64)
        y64 = y.cpu().to(torch.float64) if not y.is_complex() else y.cpu().abs().to(torch.float64)
        if x64.numel() == 0:
            continue
        max_abs = max(max_abs, float((x64 - y64).abs().max()))
        scale = max(scale, float(x64.abs().max()))
    if math.isnan(max_abs):
        return math.nan, math.nan
    return max_abs, (max_abs / scale if scale else (0.0 if max_abs == 0 else math.inf))


def states_for_diff(
    a: Source, b: Source, seed: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Both sources' state_dicts; a GGUF file's other side under GGUF's names, as its
    converter wrote them (`core.gguf_diff`)."""
    from modelbrowse.core.gguf_diff import as_gguf_names

    return as_gguf_names(a, state_for_diff(a, seed), b, state_for_diff(b, seed))


def state_for_diff(source: Source, seed: int | None = None) -> dict[str, torch.Tensor]:
    """A source's state_dict with data: a checkpoint as mapped, a model built with `seed`."""
    model, is_meta = source.build_structure(seed)
    if is_meta:
        model = source.build_real(seed)
    return dict(model.state_dict())


def _describe(tensor: torch.Tensor) -> str:
    return f"{shape_text(tuple(tensor.shape))} {_dtype(tensor)}"


def _dtype(tensor: torch.Tensor) -> str:
    """The dtype, or a quantized weight's scheme (`Q4_K`)."""
    quantization = quantization_of(tensor)
    return quantization.scheme if quantization else str(tensor.dtype).removeprefix("torch.")


def _numbers(max_abs: float, max_rel: float) -> str:
    return f"max abs diff {max_abs:.3g}, max rel diff {max_rel:.3g}"


def diff_summary(diffs: list[KeyDiff]) -> str:
    counts = {change: 0 for change in Change}
    for item in diffs:
        counts[item.change] += 1
    parts = [f"{counts[c]} {CHANGE_WORDS[c]}" for c in Change if counts[c]]
    verdict = "equal" if is_equal(diffs) else "different"
    return f"{verdict}: {', '.join(parts) or 'no tensors'}"


def is_equal(diffs: list[KeyDiff]) -> bool:
    return all(item.change is Change.EQUAL for item in diffs)


def diff_text(diffs: list[KeyDiff], a_label: str, b_label: str) -> str:
    """What `--diff --print` prints: the differing keys, marked, then the summary."""
    lines = [f"A: {printable(a_label)}", f"B: {printable(b_label)}", ""]
    legend = ", ".join(f"{c.value} {CHANGE_WORDS[c]}" for c in Change if c is not Change.EQUAL)
    changed = [item.line() for item in diffs if item.change is not Change.EQUAL]
    if changed:
        lines += [f"({legend})", *changed, ""]
    lines.append(diff_summary(diffs))
    return "\n".join(lines) + "\n"


@dataclass
class DiffView:
    """Two sources as one tree: the union of their keys, each path marked with its change."""

    model: torch.nn.Module
    diffs: list[KeyDiff]
    by_key: dict[str, KeyDiff]
    marks: dict[str, Change]

    @property
    def equal(self) -> bool:
        return is_equal(self.diffs)


def diff_view(a: Source, b: Source, seed: int | None = None) -> DiffView:
    """Compare A and B (reading every tensor of both) and build the union tree."""
    from modelbrowse.core.sources.weights_tree import tree_from_state_dict

    left, right = states_for_diff(a, b, seed)
    diffs = diff_states(left, right)
    union = dict(left)
    union.update((k, v) for k, v in right.items() if k not in left)
    by_key = {item.key: item for item in diffs}
    return DiffView(tree_from_state_dict(union), diffs, by_key, path_marks(diffs))


def path_marks(diffs: list[KeyDiff]) -> dict[str, Change]:
    """A mark for every key and every prefix: a prefix is equal only when all under it are."""
    marks: dict[str, Change] = {}
    for item in diffs:
        marks[item.key] = item.change
        parts = item.key.split(".")
        for cut in range(len(parts) - 1, -1, -1):
            prefix = ".".join(parts[:cut])
            if item.change is Change.EQUAL:
                marks.setdefault(prefix, Change.EQUAL)
            else:
                marks[prefix] = Change.VALUES
    return marks
