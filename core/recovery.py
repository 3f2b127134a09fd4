"""Unsaved edits kept when a session is stopped by a signal (a dropped SSH connection, a
SIGTERM): a recipe without weights, which `modelbrowse SOURCE --recipe FILE` opens again.

The files live in `$XDG_STATE_HOME/modelbrowse/recovered/`. The next session of the same
source says where they are, once.
"""

from __future__ import annotations

import datetime as dt
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbrowse.core.recipe import (
    RECIPE_SUFFIX,
    RecipeError,
    build_recipe,
    check_same_source,
    read_recipe,
    write_recipe,
)

if TYPE_CHECKING:
    from torch import nn

    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.sources.base import Source

# Older kept files than this many are removed when a new one is written.
KEEP_AT_MOST = 50


def recovery_dir() -> Path:
    from platformdirs import user_state_path

    return user_state_path("modelbrowse") / "recovered"


@dataclass(frozen=True)
class KeptEdits:
    """One file of kept edits, as the next session announces it."""

    path: Path
    spec: str
    command: str
    reason: str
    at: str
    edits: int

    def announcement(self) -> str:
        plural = "s" if self.edits != 1 else ""
        return (
            f"{self.edits} unsaved edit{plural} of {self.spec} from a session {self.reason} "
            f"at {self.at} were kept: {reopen_command(self.command, self.path)} reopens them"
        )


def reopen_command(command: str, path: Path) -> str:
    """The session's command line with `--recipe PATH`: the app, those edits applied."""
    return f"{command} --recipe {shlex.quote(str(path))}"


def keep_unsaved(
    source: Source,
    init_seed: int | None,
    edits: list[Edit],
    model: nn.Module,
    reason: str,
    command: str,
) -> Path:
    """Write the session's edits as a recipe in the recovery folder; its path.

    Raises OSError (or SaveError) when the folder cannot be written."""
    folder = recovery_dir()
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now()
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(source.spec).name)
    path = folder / f"{name or 'model'}-{now:%Y%m%d-%H%M%S-%f}{RECIPE_SUFFIX}"
    recipe = build_recipe(source, init_seed, edits, model, None)
    recipe["kept"] = {
        "reason": reason,
        "command": command,
        "at": now.isoformat(sep=" ", timespec="seconds"),
        "unsaved_edits": len(edits),
        # The recipe lists a selection's edits one by one; these put them back together.
        "steps": [_step(edit) for edit in edits],
        "announced": False,
    }
    write_recipe(recipe, path)
    _prune(folder)
    return path


def _step(edit: Edit) -> dict[str, Any]:
    from modelbrowse.core.edits.batch import Batch

    step: dict[str, Any] = {"records": len(edit.records())}
    if isinstance(edit, Batch):
        step.update(selector=edit.path, what=edit.what)
    return step


def as_made(recipe: dict[str, Any], edits: list[Edit]) -> list[Edit]:
    """A kept recipe's edits as the session made them: a selection's edits as one step (one
    `u` undoes it). Any other recipe, or steps that do not add up, one edit a step."""
    from modelbrowse.core.edits.batch import Batch

    kept = recipe.get("kept")
    steps = kept.get("steps") if isinstance(kept, dict) else None
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        return edits
    counts = [s.get("records") for s in steps]
    if not all(isinstance(n, int) and n > 0 for n in counts) or sum(counts) != len(edits):
        return edits
    grouped: list[Edit] = []
    at = 0
    for step, count in zip(steps, counts, strict=True):
        chunk, at = edits[at : at + count], at + count
        if "selector" in step:
            grouped.append(Batch(str(step["selector"]), chunk, what=str(step.get("what", "edit"))))
        else:
            grouped.extend(chunk)
    return grouped


def kept_for(source: Source, skipped: list[str] | None = None) -> list[KeptEdits]:
    """The kept edits of this source (as `--recipe` would accept them) that no session has
    announced yet, newest first. A file that cannot be read as a recipe is passed over, and
    one line saying why goes to `skipped`: nothing in this folder stops a session starting."""
    found: list[KeptEdits] = []
    for path in _newest_first(recovery_dir()):
        try:
            recipe = read_recipe(path)
        except Exception as exc:  # whatever is in the folder, the session starts
            if skipped is not None:
                skipped.append(f"skipped {path.name} in the recovery folder: {_first(exc)}")
            continue
        try:
            check_same_source(recipe, source)
        except RecipeError:
            continue  # another model's edits
        kept = recipe.get("kept")
        if not isinstance(kept, dict) or kept.get("announced"):
            continue
        found.append(
            KeptEdits(
                path=path,
                spec=source.spec,
                command=kept.get("command") or shlex.join(["modelbrowse", source.spec]),
                reason=kept.get("reason", "stopped"),
                at=kept.get("at", "?"),
                edits=kept.get("unsaved_edits", 0),
            )
        )
    return found


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def mark_announced(path: Path) -> None:
    """Announce a file once; it stays for `--recipe` until pruned."""
    try:
        recipe = read_recipe(path)
    except RecipeError:
        return
    if not isinstance(recipe.get("kept"), dict):
        return
    recipe["kept"]["announced"] = True
    try:
        write_recipe(recipe, path)
    except Exception:  # a read-only state folder: announcing again next time is harmless
        return


def _newest_first(folder: Path) -> list[Path]:
    dated: list[tuple[float, Path]] = []
    for path in folder.glob(f"*{RECIPE_SUFFIX}") if folder.is_dir() else []:
        try:
            info = path.stat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            dated.append((info.st_mtime, path))
    return [path for _, path in sorted(dated, reverse=True)]


def _prune(folder: Path) -> None:
    for path in _newest_first(folder)[KEEP_AT_MOST:]:
        path.unlink(missing_ok=True)
