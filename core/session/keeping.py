"""Where the edits go: the name `w` suggests, and the recipe kept when the app is stopped."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelbrowse.core.edits.history import EditHistory
    from modelbrowse.core.sources.base import Source


def default_save_name(source_spec: str, kind: str = "") -> str:
    """`alexnet` -> `alexnet-edited.pt`; `pkg.models:Net` -> `net-edited.pt`; a checkpoint
    `runs/best.pth` -> `runs/best-edited.pth`, beside it and in its format."""
    if kind == "checkpoint":
        path = Path(source_spec).expanduser()
        suffix = path.suffix.lower() if path.is_file() else ".safetensors"
        if suffix not in (".pt", ".pth", ".bin", ".ckpt", ".safetensors"):
            suffix = ".pt"
        name = path.stem if path.is_file() else path.name
        return str(path.with_name(f"{name or 'model'}-edited{suffix}"))
    name = source_spec.rpartition(":")[2] or source_spec
    name = Path(name).stem or "model"
    if kind == "huggingface":  # the config.json of a model folder: name it after the folder
        name = Path(source_spec).parent.name or "model"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.lower())
    return f"{safe or 'model'}-edited.pt"


def keep_unsaved(
    source: Source, seed: int | None, history: EditHistory, reason: str, command: str
) -> str:
    """Write the unsaved edits where the next session of this model finds them; what the
    last line says about them."""
    from modelbrowse.core.errors import ModelBrowseError
    from modelbrowse.core.recovery import keep_unsaved, reopen_command

    count = len(history.done)
    plural = "s" if count != 1 else ""
    try:
        path = keep_unsaved(source, seed, list(history.done), history.model, reason, command)
    except (OSError, ModelBrowseError) as exc:
        return f"; the {count} edit{plural} could not be kept: {exc}"
    return f"; {count} edit{plural} kept: {reopen_command(command, path)} reopens them"
