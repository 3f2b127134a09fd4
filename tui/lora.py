"""The LoRA key: `A` adds LoRA adapters (through peft) to the selection or the cursor's subtree,
after a dialog that shows the modules that will get them and those LoRA cannot adapt."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.tui.editing import EditActions
from modelbrowse.tui.screens.lora_dialog import LoraAnswer, LoraDialog, LoraPreview

if TYPE_CHECKING:
    from torch import nn

    from modelbrowse.core.edits.lora import AddLora


class LoraActions(EditActions):
    """The `A` key."""

    def action_add_lora(self) -> None:
        selection = self._selected()
        if selection is not None:
            refusal = self.session.edit_refusal()
            if refusal:
                self.notify(refusal, severity="warning", title="nothing changed")
                return
            paths, where = list(selection.paths), selection.pattern
        else:
            path = self._cursor()
            if path is None:
                return
            paths, where = [path], path
        if self._weights_only("adding LoRA"):
            return
        self._when_real(lambda: self._ask_lora(paths, where))

    def _ask_lora(self, paths: list[str], where: str) -> None:
        from modelbrowse.core.edits.lora import plan_for_paths, require_peft

        history = self.session.history
        assert history is not None
        try:
            require_peft()
        except ModelBrowseError as exc:
            self.notify(str(exc), severity="error", title="nothing changed")
            return
        model = history.model
        plan = plan_for_paths(model, paths)
        if not plan.adapted:
            wrong = plan.unadaptable_text() or "no module"
            self.notify(
                f"nothing LoRA can adapt in {where or 'the model'}: {wrong}", severity="warning"
            )
            return

        def preview(targets: list[str], saved: list[str]) -> LoraPreview:
            return _preview(model, targets, saved)

        def chosen(answer: LoraAnswer | None) -> None:
            if answer is not None:
                self._apply(_edit(where, answer))

        title = f"add LoRA adapters: {where or 'the whole model'}"
        saved = [p for p in _replaced_heads(self) if p not in plan.adapted]
        dialog = LoraDialog(title, list(plan.targets), saved, plan.unadaptable_text(), preview)
        self.push_screen(dialog, chosen)


def _edit(where: str, answer: LoraAnswer) -> AddLora:
    from modelbrowse.core.edits.lora import AddLora

    return AddLora(
        where,
        answer.targets,
        answer.r,
        answer.lora_alpha,
        answer.lora_dropout,
        answer.modules_to_save,
    )


def _preview(model: nn.Module, targets: list[str], saved: list[str]) -> LoraPreview:
    from modelbrowse.core.edits.lora import match_targets, targets_problem

    plan = match_targets(model, targets)
    return LoraPreview(
        plan.adapted_text(), plan.unadaptable_text(), targets_problem(model, targets, saved)
    )


def _replaced_heads(app: EditActions) -> list[str]:
    """Modules replaced by earlier edits: a new head is usually trained whole."""
    from modelbrowse.core.edits.modules import Delete, Replace

    history = app.session.history
    done = history.done if history is not None else []
    index = app.session.index
    return [
        e.path
        for e in done
        if isinstance(e, Replace) and not isinstance(e, Delete) and index and e.path in index
    ]
