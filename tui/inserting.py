"""The insert key: `a` puts a new module after or before the cursor's in a list, at either end
of a list, or under any module (a leaf too) with any name `add_module` accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelbrowse.core.session import plans
from modelbrowse.tui.editing import EditActions
from modelbrowse.tui.screens.insert_dialog import InsertDialog

if TYPE_CHECKING:
    from modelbrowse.core.edits.base import Edit
    from modelbrowse.tui.screens.dialogs import SpecAnswer


class InsertActions(EditActions):
    """The insert key."""

    def action_insert(self) -> None:
        from modelbrowse.core.edits.modules import AddModule, Insert, child_name_problem

        path = self._cursor()
        if path is None or self._weights_only("inserting"):
            return
        index = self.session.index
        assert index is not None
        node = index.node(path)
        if not node.is_module:
            self.notify("insert acts on modules: move to one", severity="warning")
            return
        choices = plans.places(index, path)

        def name_problem(name: str) -> str | None:
            return child_name_problem(node.obj, path, name)

        def chosen(answer: SpecAnswer | None) -> None:
            if answer is None:
                return
            place = choices[answer.place]
            edit: Edit
            if place.container is None:
                edit = AddModule(place.parent, answer.name, answer.spec)
            else:
                edit = Insert(place.container, place.position, answer.spec)
            self._when_real(lambda: self._apply(edit))

        named = next(n for n, place in enumerate(choices) if place.container is None)
        title = (
            f"add a named child to {path or 'the root'}"
            if len(choices) == 1
            else f"insert a module, from {path or 'the root'}"
        )
        words = [place.words for place in choices]
        dialog = InsertDialog(title, words, named, plans.spec_problem, name_problem)
        self.push_screen(dialog, chosen)
