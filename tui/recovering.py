"""Edits that outlive a session: kept when a signal stops the app with edits unsaved, said at
the next start of the same model, and opened again with `--recipe FILE`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.tui.base import AppBase
from modelbrowse.tui.signals import stopped_message

if TYPE_CHECKING:
    from modelbrowse.core.edits.base import Edit


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


class RecoveryActions(AppBase):
    """A recipe's edits applied again; unsaved edits kept when stopped, and said next time."""

    def _queue_recipe_edits(self) -> None:
        count = len(self.session.recipe_edits)
        if not count:
            return
        waiting = f"initialising weights: the recipe's {count} edits follow"
        self._when_real(self._apply_recipe_edits, waiting)

    def _apply_recipe_edits(self) -> None:
        """Each edit as if made now: undoable one by one, and unsaved. An edit that builds
        a module is built in a worker first; the steps after it follow once it is applied."""
        edits = self.session.take_recipe_edits()
        self._recipe_steps(edits, 0, Path(self.options.recipe or "").name)

    def _recipe_steps(self, edits: list[Edit], start: int, name: str) -> None:
        history = self.session.history
        assert history is not None
        for number in range(start, len(edits)):
            edit = edits[number]

            def then(applied: bool, number: int = number) -> None:
                if applied:
                    self._recipe_steps(edits, number + 1, name)
                else:
                    self._recipe_step_failed(edits[number], number, name, "")

            why = ""
            try:
                applied = self._apply(edit, confirmed=True, then=then, quiet=True)
            except KeyError as exc:  # a path the model does not have
                applied, why = False, f": no {exc} in the model"
            except ModelBrowseError as exc:  # one message says which step and why
                applied, why = False, f": {exc}"
            if applied is None:
                return  # being built: `then` goes on
            if not applied or not history.done or history.done[-1] is not edit:
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
        return self.session.keep_unsaved(stopped_message(signum), session_command())

    def _announce_kept_edits(self) -> None:
        """Edits kept by a stopped session of this model: said once. A file in the recovery
        folder that cannot be read is passed over with one line; the session goes on."""
        from modelbrowse.core.recovery import kept_for, mark_announced

        assert self.session.source is not None
        opened = Path(self.options.recipe).resolve() if self.options.recipe else None
        skipped: list[str] = []
        for kept in kept_for(self.session.source, skipped)[:3]:
            if kept.path.resolve() != opened:  # not the file this session opened
                self.notify(kept.announcement(), title="edits kept", severity="warning", timeout=30)
            mark_announced(kept.path)
        if skipped:
            more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
            self.notify(skipped[0] + more, title="edits kept", severity="warning", timeout=30)
