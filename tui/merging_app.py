"""`M`: an adapter open over its base (`ADAPTER --arch BASE`) merged into that base and
written, as `--merge` writes it, in a worker that reports its progress."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.saving.names import FORMATS, extensions_text
from modelbrowse.tui.base import LOADING, AppBase
from modelbrowse.tui.saving import SaveNews
from modelbrowse.tui.screens.dialogs import ConfirmDialog
from modelbrowse.tui.screens.path_dialog import PathDialog

if TYPE_CHECKING:
    from modelbrowse.core.merge.run import MergeReport

NOT_AN_ADAPTER = "M merges a PEFT adapter into its base: open ADAPTER_FOLDER --arch BASE"


def merge_path_problem(text: str) -> str | None:
    """Why the merge cannot be written to `text`, or None."""
    text = text.strip()
    if not text:
        return "type a path: a .safetensors or .pt file, or a folder"
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix and suffix not in FORMATS and not path.is_dir():
        return f"{path.name}: name a file ({extensions_text()}) or a folder"
    if suffix in FORMATS and path.is_dir():
        return f"{path} is a directory"
    if not path.parent.is_dir():
        return f"the directory {path.parent} does not exist"
    if not os.access(path.parent, os.W_OK):
        return f"the directory {path.parent} is not writable"
    return None


class MergeActions(AppBase):
    """`M` writes the adapter merged into its base."""

    def _merge_inputs(self) -> tuple[Path, Path] | str:
        """The adapter's folder and the base's files, or why there are none."""
        source = self.session.source
        folder = getattr(source, "folder", None)
        base = getattr(source, "base", None)
        if source is None or source.kind != "adapter" or base is None:
            return NOT_AN_ADAPTER
        path = Path(base.spec).expanduser()
        if path.name == "config.json":  # a Hugging Face folder: its weights are beside it
            path = path.parent
        if base.kind not in ("checkpoint", "huggingface") or not path.exists():
            return f"M merges into a base read from files; {base.label} is built from code"
        assert isinstance(folder, Path)
        return folder, path

    def action_merge(self) -> None:
        if self.session.index is None or self.session.source is None:
            self.notify(LOADING, severity="warning")
            return
        inputs = self._merge_inputs()
        if isinstance(inputs, str):
            self.notify(inputs, severity="warning", title="nothing merged")
            return
        adapter, _ = inputs
        default = str(adapter.with_name(f"{adapter.name}-merged"))
        self.push_screen(
            PathDialog(
                "merge the adapter into its base and write it (a file or a folder)",
                default,
                merge_path_problem,
                hint="a .safetensors or .pt file, or a folder · enter merges · escape cancels",
            ),
            self._merge_path_chosen,
        )

    def _merge_path_chosen(self, text: str | None) -> None:
        if text is None:
            return
        path = Path(text.strip()).expanduser()
        if not path.exists():
            self._merge_worker(path)
            return

        def then_merge(yes: bool | None) -> None:
            if yes:
                self._merge_worker(path)

        self.push_screen(ConfirmDialog(f"{path} exists. Replace it?", y_only=True), then_merge)

    @work(thread=True, exclusive=True, group="merge")
    def _merge_worker(self, path: Path) -> None:
        from modelbrowse.core.merge.run import merge_adapter

        inputs = self._merge_inputs()
        assert not isinstance(inputs, str)
        adapter, base = inputs
        shown = [-1]

        def tell(callback: Callable[..., None], *args: object) -> None:
            with contextlib.suppress(RuntimeError):  # the app has left
                self.post_message(SaveNews(callback, *args))

        def progress(fraction: float) -> None:
            percent = int(fraction * 100)
            if percent != shown[0] and percent % 5 == 0:
                shown[0] = percent
                tell(self._status, f"merging into {path}… {percent}%")

        tell(self._status, f"merging into {path}…")
        try:
            report = merge_adapter(base, adapter, path, progress=progress)
        except ModelBrowseError as exc:
            tell(self._merge_failed, str(exc))
            return
        except Exception as exc:  # never a traceback
            tell(self._merge_failed, f"unexpected error: {exc!r}")
            return
        tell(self._merged, report)

    def _merged(self, report: MergeReport) -> None:
        self._status(report.summary(), "green")

    def _merge_failed(self, message: str) -> None:
        self._status(f"not merged: {message}", "bold red")
        self.notify(message, severity="error", title="not merged")
