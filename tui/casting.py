"""The cast key: `c` casts the subtree at the cursor to bf16, fp16 or fp32, keeping the norm
layers, biases and computed buffers in float32 unless the dialog's list says otherwise."""

from __future__ import annotations

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.tui.editing import EditActions
from modelbrowse.tui.screens.cast_dialog import CastAnswer, CastDialog


class CastActions(EditActions):
    """The `c` key."""

    def action_cast(self) -> None:
        path = self._cursor()
        if path is not None:
            self._when_real(lambda: self._ask_cast(path))

    def _ask_cast(self, path: str) -> None:
        from modelbrowse.core.edits.cast import cast_preview, default_keep, parse_keep

        assert self.session.history is not None
        model = self.session.history.model
        try:
            keep = default_keep(model, path)
            cast_preview(model, path, "bfloat16", keep)
        except ModelBrowseError as exc:
            self.notify(str(exc), severity="warning", title="nothing changed")
            return

        def preview(dtype: str, text: str) -> tuple[str, str | None]:
            try:
                return cast_preview(model, path, dtype, parse_keep(text))
            except ModelBrowseError as exc:
                return "", str(exc)

        def chosen(answer: CastAnswer | None) -> None:
            from modelbrowse.core.edits.cast import Cast

            if answer is None:
                self._status("nothing changed")
                return
            self._apply(Cast(path, answer.dtype, parse_keep(answer.keep)))

        self.push_screen(CastDialog(path or "the whole model", keep, preview), chosen)
