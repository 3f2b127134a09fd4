"""The insert key: `a` puts a new module after or before the cursor's in a list, at either end
of a list, or under any module (a leaf too) with any name `add_module` accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelbrowse.tui.screens.insert_dialog import InsertDialog

if TYPE_CHECKING:
    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.tui.app import ModelBrowseApp
    from modelbrowse.tui.screens.dialogs import SpecAnswer


@dataclass(frozen=True)
class Place:
    """Where a new module goes: into a list (`container`) at `position`, or, where
    `container` is None, under `parent` by a name the user types."""

    words: str
    container: str | None
    position: int = 0
    parent: str = ""


def places(index: NodeIndex, path: str) -> list[Place]:
    """The places for a new module, from the module at `path`: the first is what enter picks."""
    from modelbrowse.core.edits.modules import is_positional

    node = index.node(path)
    found: list[Place] = []
    where = path or "the root"
    if node.parent is not None and is_positional(index.node(node.parent).obj):
        parent = node.parent or "the root"
        position = int(node.name)
        found.append(Place(f"after {path}, in {parent}", node.parent, position + 1))
        found.append(Place(f"before {path}, in {parent}", node.parent, position))
    if is_positional(node.obj):
        count = index.module_count(path)
        if count:
            found.append(Place(f"at the end of {where}", path, count))
            found.append(Place(f"at the start of {where}", path, 0))
        else:
            found.append(Place(f"into {where}, empty until now", path, 0))
    found.append(Place(f"inside {where}, as a child with a name", None, parent=path))
    return found


class InsertActions:
    """Mixed into the App: the insert key."""

    def action_insert(self) -> None:
        from modelbrowse.core.edits.modules import AddModule, Insert, child_name_problem

        app: ModelBrowseApp = self  # type: ignore[assignment]
        path = app._cursor()
        if path is None or app._weights_only("inserting"):
            return
        assert app.index is not None
        node = app.index.node(path)
        if not node.is_module:
            app.notify("insert acts on modules: move to one", severity="warning")
            return
        choices = places(app.index, path)

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
            app._when_real(lambda: app._apply(edit))

        named = next(n for n, place in enumerate(choices) if place.container is None)
        title = (
            f"add a named child to {path or 'the root'}"
            if len(choices) == 1
            else f"insert a module, from {path or 'the root'}"
        )
        words = [place.words for place in choices]
        dialog = InsertDialog(title, words, named, app._spec_check, name_problem)
        app.push_screen(dialog, chosen)
