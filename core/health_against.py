"""`--check --against REF`: the parameters a recipe froze, compared with a reference.

A parameter frozen while training should come out as it went in: one that differs between the
reference and the checked source was meant to be frozen but changed. Both sides are read one
tensor at a time, a slice at a time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from modelbrowse.core.diff import Change, compare_tensors
from modelbrowse.core.errors import UsageError
from modelbrowse.core.health_findings import Finding, Tensors
from modelbrowse.core.recipe import read_recipe, recipe_path_for
from modelbrowse.core.sources.base import Source

FROZEN_CHANGED = "frozen_changed"


@dataclass(frozen=True)
class Against:
    """The reference to compare with, the parameters the recipe froze, and the reference's
    name in the findings."""

    reference: Source
    frozen: list[str]
    label: str


def recipe_for_check(source: str, recipe: str | None) -> Path:
    """The recipe that says what was frozen: `recipe` where given, else the one beside the
    source's file; a usage error when there is none."""
    if recipe is not None:
        if not os.path.isfile(recipe):
            raise UsageError(f"no recipe at {recipe}")
        return Path(recipe)
    beside = recipe_path_for(source)
    if not beside.is_file():
        raise UsageError(
            f"--against compares what a recipe froze, and there is no recipe at {beside} "
            "(--recipe R names one)"
        )
    return beside


def frozen_of(recipe: Path) -> list[str]:
    """The recipe's frozen parameters, each once, in its order."""
    return list(dict.fromkeys(read_recipe(recipe)["frozen"]))


def frozen_changes(
    checked: Tensors, reference: Tensors, frozen: Sequence[str], reference_label: str
) -> tuple[list[Finding], list[str]]:
    """A finding for each frozen parameter that differs between the two, and notes on those
    not found on both sides."""
    found: list[Finding] = []
    absent: list[str] = []
    for key in frozen:
        if key not in checked.shapes or key not in reference.shapes:
            absent.append(key)
            continue
        before, after = reference.values(key), checked.values(key)
        diff = compare_tensors(key, before, after)
        if diff.change is Change.EQUAL:
            continue
        numbers: dict[str, object] = {"against": reference_label}
        if diff.change is Change.SHAPE:
            numbers["shapes"] = [list(before.shape), list(after.shape)]
            said = f"shape {diff.detail}"
        else:
            numbers["max_abs_diff"] = diff.max_abs
            said = f"largest difference {diff.max_abs:g}"
            if diff.change is Change.DTYPE:
                said = f"{diff.detail.partition(',')[0]}, {said}"
        found.append(
            Finding(
                FROZEN_CHANGED,
                key,
                numbers,
                f"meant to be frozen (per the recipe) but changed from {reference_label}: {said}",
            )
        )
    notes = []
    if absent:
        more = f" and {len(absent) - 1:,} more" if len(absent) > 1 else ""
        notes.append(
            f"frozen in the recipe but not in both {reference_label} and the source: "
            f"{absent[0]}{more}"
        )
    return found, notes
