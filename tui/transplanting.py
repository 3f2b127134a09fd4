"""The transplant key: `T` asks for a checkpoint, reads it in a worker, shows the prefilled
prefix mapping with its report, and copies on enter, in one undoable step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import work

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.session import plans
from modelbrowse.tui.editing import EditActions
from modelbrowse.tui.screens.path_dialog import PathDialog
from modelbrowse.tui.screens.transplant_dialog import Preview, TransplantDialog

if TYPE_CHECKING:
    from modelbrowse.core.edits.transplant import TransplantSource


def donor_problem(text: str) -> str | None:
    """Why the path typed cannot be a checkpoint to copy from, or None."""
    if not text:
        return "name a checkpoint file or folder to copy weights from"
    if not Path(text).expanduser().exists():
        return f"no such file or directory: {text}"
    return None


class TransplantActions(EditActions):
    """The `T` key."""

    def action_transplant(self) -> None:
        path = self._cursor()
        if path is None:
            return
        index = self.session.index
        assert index is not None
        refusal = plans.transplant_refusal(index, path)
        if refusal:
            self.notify(refusal, severity="warning")
            return

        def chosen(spec: str | None) -> None:
            if spec:
                self._when_real(lambda: self.read_donor(path, spec))
            else:
                self._status("nothing changed")

        where = path or "the whole model"
        dialog = PathDialog(
            f"transplant into {where}: copy weights from the checkpoint",
            "",
            donor_problem,
            hint="enter reads it and shows what would be copied · escape cancels",
            placeholder="a checkpoint file (.pt, .safetensors, …) or a Hugging Face folder",
        )
        self.push_screen(dialog, chosen)

    @work(thread=True, exclusive=True, group="transplant")
    def read_donor(self, path: str, spec: str) -> None:
        """Read the checkpoint off the UI thread (hashing it reads every byte)."""
        from modelbrowse.core.edits.transplant import open_source

        self.call_from_thread(self._status, f"reading {spec} …")
        try:
            source = open_source(spec, trust=self.options.trust_pickle)
        except ModelBrowseError as exc:
            self.call_from_thread(self._donor_failed, str(exc))
            return
        self.call_from_thread(self._donor_read, path, source)

    def _donor_failed(self, message: str) -> None:
        self.notify(message, severity="error", title="nothing changed")
        self._status(f"nothing changed: {message}", "bold red")

    def _donor_read(self, path: str, source: TransplantSource) -> None:
        from modelbrowse.core.edits.transplant import (
            PrefixMap,
            Transplant,
            TransplantError,
            best_mapping,
            plan,
        )

        history = self.session.history
        if history is None or self.session.edit_refusal():
            self._donor_failed(self.session.edit_refusal() or "the model is not ready")
            return
        model = history.model

        def preview(source_prefix: str, target_prefix: str) -> Preview:
            mapping = PrefixMap(source_prefix, target_prefix)
            try:
                report = plan(model, path, source, mapping)
            except TransplantError as exc:
                return Preview([], str(exc))
            if report.copied:
                return Preview(report.lines())
            return Preview(report.lines(), f"{mapping.text()} copies nothing: change a prefix")

        def answered(prefixes: tuple[str, str] | None) -> None:
            if prefixes is None:
                self._status("nothing changed")
                return
            self._apply(Transplant.of(path, source, PrefixMap(*prefixes)))

        try:
            best = best_mapping(model, path, source)
        except TransplantError as exc:
            self._donor_failed(str(exc))
            return
        title = f"transplant {source.path.name} ({source.format}) into {path or 'the model'}"
        dialog = TransplantDialog(title, best.source, best.target, preview)
        self.push_screen(dialog, answered)
