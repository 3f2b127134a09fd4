"""Does a checkpoint fit an architecture? Missing and unexpected keys, shape mismatches, casts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from modelbrowse.core.units import printable, shape_text


@dataclass
class FitReport:
    """How a checkpoint's keys meet a model's state_dict (`load_state_dict(strict=False)`)."""

    arch: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    casts: list[tuple[str, torch.dtype, torch.dtype]] = field(default_factory=list)
    # Keys the checkpoint lacks that are tied to one it holds (an output layer sharing the
    # input embedding): loading one loads both.
    tied: list[tuple[str, str]] = field(default_factory=list)
    prefix_hint: str = ""

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        if self.fits:
            text = f"fits {self.arch}: all {len(self.loaded)} tensors loaded"
        else:
            text = (
                f"{self.arch}: {len(self.loaded)} loaded, {len(self.missing)} missing, "
                f"{len(self.unexpected)} unexpected, {len(self.mismatched)} shape mismatches"
            )
        if self.casts:
            text += f", {len(self.casts)} cast"
        return text

    def lines(self, limit: int = 50) -> list[str]:
        """The report as text: a summary line, then each problem."""
        out = [self.summary()]
        sections: list[tuple[str, list[str]]] = [
            ("missing from the checkpoint (left as initialised)", self.missing),
            ("unexpected (in the checkpoint, not in the model; ignored)", self.unexpected),
            (
                "shape mismatches (checkpoint -> model; left as initialised)",
                [f"{k}: {shape_text(a)} -> {shape_text(b)}" for k, a, b in self.mismatched],
            ),
            (
                "tied to a loaded tensor (loaded with it)",
                [f"{k} = {printable(loaded)}" for k, loaded in self.tied],
            ),
            (
                "dtype casts done by load_state_dict",
                [f"{k}: {_dtype(a)} -> {_dtype(b)}" for k, a, b in self.casts],
            ),
        ]
        for title, items in sections:
            if not items:
                continue
            out.append(f"{title}: {len(items)}")
            out.extend(f"  {printable(item)}" for item in items[:limit])
            if len(items) > limit:
                out.append(f"  ... and {len(items) - limit} more")
        if self.prefix_hint:
            out.append(self.prefix_hint)
        return out


def fit_report(
    arch: str,
    model_state: Mapping[str, torch.Tensor],
    checkpoint: Mapping[str, torch.Tensor],
    ties: list[list[str]] | None = None,
) -> FitReport:
    """Compare by key, shape and dtype only: works on `meta` tensors and reads no data.
    `ties` (groups of names of one tensor) lets a tie that is saved once count as loaded."""
    report = FitReport(arch)
    for key, expected in model_state.items():
        found = checkpoint.get(key)
        if found is None:
            report.missing.append(key)
        elif tuple(found.shape) != tuple(expected.shape):
            report.mismatched.append((key, tuple(found.shape), tuple(expected.shape)))
        else:
            report.loaded.append(key)
            if found.dtype != expected.dtype:
                report.casts.append((key, found.dtype, expected.dtype))
    loaded = set(report.loaded)
    for group in ties or []:
        present = next((name for name in group if name in loaded), None)
        if present is None:
            continue
        for name in group:
            if name in report.missing:
                report.missing.remove(name)
                report.tied.append((name, present))
    report.unexpected = [key for key in checkpoint if key not in model_state]
    if report.missing and report.unexpected:
        report.prefix_hint = prefix_hint(list(model_state), report.unexpected)
    return report


def prefix_hint(model_keys: list[str], checkpoint_keys: list[str]) -> str:
    """A prefix that, removed from or added to the checkpoint's keys, would make them match."""
    wanted = set(model_keys)
    extra: Counter[str] = Counter()
    lacking: Counter[str] = Counter()
    for key in checkpoint_keys:
        parts = key.split(".")
        for cut in range(1, len(parts)):
            if ".".join(parts[cut:]) in wanted:
                extra[".".join(parts[:cut]) + "."] += 1
                break
    model_suffixes: dict[str, str] = {}
    for key in model_keys:
        parts = key.split(".")
        for cut in range(1, len(parts)):
            model_suffixes.setdefault(".".join(parts[cut:]), ".".join(parts[:cut]) + ".")
    for key in checkpoint_keys:
        if key in model_suffixes:
            lacking[model_suffixes[key]] += 1
    best_extra = extra.most_common(1)
    best_lacking = lacking.most_common(1)
    if best_extra and (not best_lacking or best_extra[0][1] >= best_lacking[0][1]):
        prefix, count = best_extra[0]
        return (
            f"hint: {count} checkpoint keys fit once the prefix {printable(prefix)!r} is removed "
            f"(--strip-prefix {printable(prefix)})"
        )
    if best_lacking:
        prefix, count = best_lacking[0]
        return f"hint: {count} checkpoint keys fit the model under the prefix {printable(prefix)!r}"
    return ""


def no_fit_lines(
    model_state: Mapping[str, torch.Tensor],
    checkpoint: Mapping[str, torch.Tensor],
    closest: bool = True,
) -> list[str]:
    """When no key fits: a few keys of each side and, with `closest`, the closest pair found,
    which shows how the names differ (`lin0.model.1.weight` vs `lin0.model.0.weight`)."""
    lines = [
        f"  checkpoint: {_sample(list(checkpoint))}",
        f"  model:      {_sample(list(model_state))}",
    ]
    pair = _closest_pair(model_state, checkpoint) if closest else None
    if pair is not None:
        lines.append(f"  closest:    {pair}")
    return lines


def _sample(keys: list[str], count: int = 3) -> str:
    shown = ", ".join(printable(key, 80) for key in keys[:count])
    more = f", ... ({len(keys)} keys)" if len(keys) > count else ""
    return (shown or "no keys") + more


def _closest_pair(
    model_state: Mapping[str, torch.Tensor],
    checkpoint: Mapping[str, torch.Tensor],
    sample: int = 20,
) -> str | None:
    """The pair of keys, checkpoint then model, that share the most leading and trailing name
    parts (of one shape where any has it), with how many sampled keys differ the same way."""
    model_parts = [(key, key.split("."), tuple(t.shape)) for key, t in model_state.items()]
    renames: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], tuple[str, str, str]] = {}
    keys = list(checkpoint)[:sample]
    for key in keys:
        parts, shape = key.split("."), tuple(checkpoint[key].shape)
        best: tuple[tuple[bool, int], str, list[str]] | None = None
        for other, other_parts, other_shape in model_parts:
            lead, tail = _shared_parts(parts, other_parts)
            score = (shape == other_shape, lead + tail)
            if lead + tail and (best is None or score > best[0]):
                best = (score, other, other_parts)
        if best is None:
            continue
        lead, tail = _shared_parts(parts, best[2])
        rename = (
            ".".join(parts[lead : len(parts) - tail]),
            ".".join(best[2][lead : len(best[2]) - tail]),
        )
        renames[rename] += 1
        context = parts[lead - 1] + "." if lead else ""
        first.setdefault(rename, (key, best[1], context))
    if not renames:
        return None
    rename, count = renames.most_common(1)[0]
    key, other, context = first[rename]
    old, new = (printable(context + part if part else "(nothing)", 60) for part in rename)
    return (
        f"{printable(key, 80)} vs {printable(other, 80)} "
        f"({count} of {len(keys)} keys differ the same way: {old} -> {new})"
    )


def _shared_parts(parts: list[str], other: list[str]) -> tuple[int, int]:
    """How many dotted parts two keys share at the start, and then at the end."""
    shortest = min(len(parts), len(other))
    lead = 0
    while lead < shortest and parts[lead] == other[lead]:
        lead += 1
    tail = 0
    while tail < shortest - lead and parts[-1 - tail] == other[-1 - tail]:
        tail += 1
    return lead, tail


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
