"""Edits that outlive a session: kept when a signal stops the app with edits unsaved, said at
the next start of the same model, and opened again with `--recipe FILE`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.tui.signals import stopped_message

if TYPE_CHECKING:
    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.edits.history import EditHistory
    from modelbrowse.core.sources.base import Source
    from modelbrowse.tui.options import AppOptions


def session_command() -> str:
    """This session's command line without its own `--recipe FILE`: the one to reopen with."""
    args: list[str] = []
    skip = False
    for arg in sys.argv[1:]:
        if skip or arg == "--recipe" or arg.startswith("--recipe="):
            skip = arg == "--recipe"
            continue
        args.append(arg)
    return shlex.join(["modelbrowse", *args])


class RecoveryActions:
    """Mixed into the App."""

    options: AppOptions
    history: EditHistory | None
    source: Source | None
    init_seed: int | None
    notify: Any
    _apply: Any
    _status: Any
    _when_real: Any

    def _init_recovery(self) -> None:
        self._recipe_edits: list[Edit] = []

    # --- a recipe's edits, opened again ------------------------------------------------------

    def _read_recipe_edits(self, source: Source) -> None:
        """In the load worker: read `--recipe`, check it is this model's, take its seed."""
        if self.options.recipe is None:
            return
        from modelbrowse.core.recipe import check_same_source, edits_of, read_recipe
        from modelbrowse.core.recovery import as_made

        recipe = read_recipe(self.options.recipe)
        check_same_source(recipe, source)
        self._recipe_edits = as_made(recipe, edits_of(recipe))
        seed = recipe["source"].get("init_seed")
        if self.options.seed is None and isinstance(seed, int):
            self.init_seed = seed  # the same random weights the edits were made on

    def _queue_recipe_edits(self) -> None:
        if not self._recipe_edits:
            return
        count = len(self._recipe_edits)
        waiting = f"initialising weights: the recipe's {count} edits follow"
        self._when_real(self._apply_recipe_edits, waiting)

    def _apply_recipe_edits(self) -> None:
        """Each edit as if made now: undoable one by one, and unsaved. An edit that builds
        a module is built in a worker first; the steps after it follow once it is applied."""
        assert self.history is not None
        edits, self._recipe_edits = self._recipe_edits, []
        self._recipe_steps(edits, 0, Path(self.options.recipe or "").name)

    def _recipe_steps(self, edits: list[Edit], start: int, name: str) -> None:
        assert self.history is not None
        for number in range(start, len(edits)):
            edit = edits[number]

            def then(applied: bool, number: int = number) -> None:
                if applied:
                    self._recipe_steps(edits, number + 1, name)
                else:
                    self._recipe_step_failed(edits[number], number, name, "")

            why = ""
            try:
                applied = self._apply(edit, confirmed=True, then=then)  # errors are notified
            except KeyError as exc:  # a path the model does not have
                applied, why = False, f": no {exc} in the model"
            if applied is None:
                return  # being built: `then` goes on
            if not applied or not self.history.done or self.history.done[-1] is not edit:
                self._recipe_step_failed(edit, number, name, why)
                return
        plural = "s" if len(edits) != 1 else ""
        self._status(f"{len(edits)} edit{plural} from {name} applied · u undoes them one by one")

    def _recipe_step_failed(self, edit: Edit, number: int, name: str, why: str) -> None:
        self.notify(
            f"step {number + 1} of {name} ({edit.describe()}) did not apply{why}; "
            f"the {number} before it did",
            title="recipe",
            severity="error",
            timeout=30,
        )

    # --- kept when stopped -------------------------------------------------------------------

    def keep_unsaved_edits(self, signum: int) -> str:
        """Write the unsaved edits where the next session finds them; what to tell the user."""
        history = self.history
        if history is None or not history.unsaved or self.source is None:
            return ""
        from modelbrowse.core.recovery import keep_unsaved, reopen_command

        count = len(history.done)
        plural = "s" if count != 1 else ""
        command = session_command()
        try:
            path = keep_unsaved(
                self.source, self.init_seed, list(history.done), history.model,
                stopped_message(signum), command,
            )  # fmt: skip
        except (OSError, ModelBrowseError) as exc:
            return f"; the {count} edit{plural} could not be kept: {exc}"
        return f"; {count} edit{plural} kept: {reopen_command(command, path)} reopens them"

    def _announce_kept_edits(self, source: Source) -> None:
        """Edits kept by a stopped session of this model: said once. A file in the recovery
        folder that cannot be read is passed over with one line; the session goes on."""
        from modelbrowse.core.recovery import kept_for, mark_announced

        opened = Path(self.options.recipe).resolve() if self.options.recipe else None
        skipped: list[str] = []
        for kept in kept_for(source, skipped)[:3]:
            if kept.path.resolve() != opened:  # not the file this session opened
                self.notify(kept.announcement(), title="edits kept", severity="warning", timeout=30)
            mark_announced(kept.path)
        if skipped:
            more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
            self.notify(skipped[0] + more, title="edits kept", severity="warning", timeout=30)
