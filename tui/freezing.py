"""The freeze key: `f` freezes or unfreezes the node at the cursor or every match of the
selection. Where BatchNorm layers are inside, freezing asks whether their running statistics
stop updating too (the layers then stay in eval mode); unfreezing lets them update again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelbrowse.core.session import plans
from modelbrowse.tui.editing import EditActions
from modelbrowse.tui.screens.dialogs import ChoiceDialog

if TYPE_CHECKING:
    from modelbrowse.core.selectors import Selection

NORM_ANSWERS = [
    "weights only: BatchNorm running statistics still update in training",
    "weights and running statistics: the layers stay in eval mode, even in model.train()",
]


class FreezeActions(EditActions):
    """The `f` key."""

    def action_freeze(self) -> None:
        selection = self._selected()
        if selection is not None:
            self._freeze(None, selection)
            return
        path = self._cursor()
        if path is None or self._weights_only("freezing"):
            return
        self._freeze(path, None)

    def _freeze(self, path: str | None, selection: Selection | None) -> None:
        if selection is not None and self._weights_only("freezing"):
            return

        def freeze() -> None:
            index = self.session.index
            assert index is not None
            if selection is not None:
                plan = plans.plan_freeze_selection(index, selection)
            else:
                assert path is not None
                plan = plans.plan_freeze(index, path)
            if isinstance(plan, str):
                self.notify(plan, severity="warning")
            else:
                self._with_norm_choice(plan)

        self._when_real(freeze)

    def _with_norm_choice(self, plan: plans.FreezePlan) -> None:
        """Apply the plan's edit, asking first when freezing reaches BatchNorm layers whether
        their running statistics stop updating too."""
        settled = plan.settled()
        if settled is not None:
            self._apply(plan.make(settled))
            return

        def answered(choice: int | None) -> None:
            if choice is None:
                self._status("nothing changed")
                return
            self._apply(plan.make(choice == 1))

        count = len(plan.norms)
        question = (
            f"freeze {plan.target}: {count} BatchNorm layer{'s' if count != 1 else ''} inside"
        )
        self.push_screen(ChoiceDialog(question, NORM_ANSWERS), answered)
