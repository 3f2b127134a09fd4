"""The write key: a path, confirmations, then an atomic, verified save in a worker."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.message import Message

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.saving.names import doubled_extension, extensions_text
from modelbrowse.tui.base import LOADING, AppBase
from modelbrowse.tui.inflight import save_in_flight
from modelbrowse.tui.screens.dialogs import ConfirmDialog
from modelbrowse.tui.screens.path_dialog import PathDialog

if TYPE_CHECKING:
    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.saving.hf_folder import FolderReport
    from modelbrowse.core.saving.weights import SaveReport


# The write dialog's dtype line: floating tensors as they are, or cast on the way (those under
# a cast edit's path keep the dtype it gave them).
WRITE_DTYPES: list[tuple[str, str | None]] = [
    ("as is", None),
    ("bf16", "bfloat16"),
    ("fp16", "float16"),
    ("fp32", "float32"),
]


def path_problem(text: str, folders: bool = False) -> str | None:
    """Why `text` cannot be saved to, or None; with `folders`, a folder is a Hugging Face
    folder to write."""
    from modelbrowse.core.saving.names import is_folder_target
    from modelbrowse.core.saving.weights import SaveError, format_for

    text = text.strip()
    if not text:
        return "type a path for the weights"
    path = Path(text).expanduser()
    if folders and is_folder_target(text):
        if path.exists() and not path.is_dir():
            return f"{path} is a file: name a folder, or a file ending in {extensions_text()}"
        return None if path.parent.is_dir() else f"the directory {path.parent} does not exist"
    if path.is_dir():
        return f"{path} is a directory"
    try:
        format_for(path)
    except SaveError as exc:
        return str(exc)
    if not path.parent.is_dir():
        return f"the directory {path.parent} does not exist"
    if not os.access(path.parent, os.W_OK):
        return f"the directory {path.parent} is not writable"
    return None


def _has_lora(edits: list[Edit]) -> bool:
    from modelbrowse.core.edits.lora import lora_edit

    return lora_edit(edits) is not None


class SaveNews(Message):
    """From the save's thread: run `callback(*args)` on the app. Posting never waits on the
    app, so the write goes on while it leaves (see inflight.py)."""

    def __init__(self, callback: Callable[..., None], *args: Any) -> None:
        super().__init__()
        self.callback = callback
        self.args = args


class SaveActions(AppBase):
    """`w` writes the edited weights and the recipe beside them."""

    def action_save(self) -> None:
        session = self.session
        if session.index is None or session.source is None:
            self.notify(LOADING, severity="warning")
            return
        refusal = session.meta_refusal() or session.source.write_refusal
        if refusal is not None:
            self.notify(refusal, severity="warning", title="nothing written")
            return
        if session.history is not None and _has_lora(session.history.done):
            self._ask_adapter_folder()  # a PEFT adapter folder, the recipe inside
            return
        folders = session.folder_refusal() is None
        title = "write the weights (and the recipe beside them)"
        if folders:
            title = "write the weights: a Hugging Face folder, or a file (and the recipe)"
        dialog = PathDialog(
            title,
            session.save_name(),
            lambda text: path_problem(text, folders),
            question=doubled_extension,
            choices=WRITE_DTYPES,
            choice_title="dtype",
            placeholder=f"a folder, or a path ending in {extensions_text()}" if folders else "",
        )
        self.push_screen(dialog, lambda text: self._path_chosen(text, dialog.chosen))

    def _ask_adapter_folder(self) -> None:
        """With LoRA on the model, `w` writes a PEFT adapter folder (the recipe inside)."""
        from modelbrowse.core.saving.adapter_folder import folder_problem

        def problem(text: str) -> str | None:
            text = text.strip()
            return folder_problem(Path(text).expanduser()) if text else "type a folder name"

        name = Path(self.session.save_name())
        stem = name.name.partition(".")[0]
        default = str(name.with_name(stem if stem.endswith("-lora") else f"{stem}-lora"))
        title = "write the LoRA adapter folder (adapter_config.json, adapter_model.safetensors)"
        self.push_screen(PathDialog(title, default, problem), self._path_chosen)

    def _path_chosen(self, text: str | None, dtype: str | None = None) -> None:
        if text is None:
            return
        path = Path(text).expanduser()
        if not path.exists():
            self._start_save(path, dtype)
            return

        def then_save(yes: bool | None) -> None:
            if yes:
                self._start_save(path, dtype)

        protected = self.session.protected_paths()
        if path.resolve() in protected or any(p.parent == path.resolve() for p in protected):

            def first_answer(yes: bool | None) -> None:
                if yes:  # a second, explicit question for the file the model came from
                    question = f"Overwrite {path} with the edited weights? It cannot be undone."
                    self.push_screen(ConfirmDialog(question, y_only=True), then_save)

            question = f"{path} is the checkpoint this model was opened from. Replace it?"
            self.push_screen(ConfirmDialog(question, y_only=True), first_answer)
            return
        self.push_screen(ConfirmDialog(f"{path} exists. Overwrite it?", y_only=True), then_save)

    def _start_save(self, path: Path, dtype: str | None = None) -> None:
        if self.session.history is None:
            waiting = "initialising weights: the save starts when they are ready"
            self._when_real(lambda: self._start_save(path, dtype), waiting)
            return
        self.session.begin_save()
        self.refresh_bindings()
        self._status(f"writing {path}{f' in {dtype}' if dtype else ''}…")
        self._save_worker(path, dtype)

    def on_save_news(self, news: SaveNews) -> None:
        news.callback(*news.args)

    @work(thread=True, exclusive=True, group="save")
    def _save_worker(self, path: Path, dtype: str | None = None) -> None:
        shown = [-1]

        def tell(callback: Callable[..., None], *args: object) -> None:
            with contextlib.suppress(RuntimeError):  # the app has left: the file is what counts
                self.post_message(SaveNews(callback, *args))

        def progress(fraction: float) -> None:
            percent = int(fraction * 100)
            if percent != shown[0] and percent % 5 == 0:
                shown[0] = percent
                tell(self._status, f"writing {path}… {percent}%")

        try:
            with save_in_flight(str(path)):
                report = self.session.save(path, progress, dtype)
        except ModelBrowseError as exc:
            tell(self._save_failed, str(exc))
            return
        except Exception as exc:  # never a traceback, and the edits stay
            tell(self._save_failed, f"unexpected error: {exc!r}")
            return
        tell(self._saved, report)

    def _saved(self, report: SaveReport | FolderReport) -> None:
        from modelbrowse.core.recipe import recipe_path_for
        from modelbrowse.core.saving.hf_folder import FolderReport
        from modelbrowse.core.saving.hf_output import RECIPE_NAME

        self.session.saved(report)
        self.refresh_bindings()
        self._refresh_header()
        recipe = recipe_path_for(report.path).name
        if isinstance(report, FolderReport):  # the recipe is inside the folder
            recipe = f"{RECIPE_NAME} in it"
        elif report.path.is_dir():  # a PEFT adapter folder: the recipe is inside
            recipe = f"{report.path.name}/{recipe_path_for('adapter_model.safetensors').name}"
        self._status(f"{report.summary()} · and {recipe}", "green")

    def _save_failed(self, message: str) -> None:
        self.session.save_failed()
        self.refresh_bindings()
        self._status(f"not saved: {message}", "bold red")
        self.notify(message, severity="error", title="not saved")
