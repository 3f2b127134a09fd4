"""The file names a save accepts, without torch: the write dialog and the help read them."""

from __future__ import annotations

import os
from pathlib import Path

# The extension decides the format: torch.save's zip for all but `.safetensors`.
FORMATS = {".pt": "pt", ".pth": "pt", ".bin": "pt", ".ckpt": "pt", ".safetensors": "safetensors"}
FORMAT_WORDS = {"pt": "a torch.save zip", "safetensors": "safetensors"}


def extensions_text() -> str:
    """`.pt, .pth, .bin, .ckpt or .safetensors`: every extension a save accepts."""
    *most, last = FORMATS
    return f"{', '.join(most)} or {last}"


def doubled_extension(path: str | os.PathLike[str]) -> str | None:
    """Why a name ending in two known extensions (`x.safetensors.pt`) may not be what was
    meant, or None: only the last one decides the format."""
    suffixes = [s.lower() for s in Path(path).suffixes[-2:]]
    if len(suffixes) < 2 or not all(s in FORMATS for s in suffixes):
        return None
    inner, outer = suffixes
    name = Path(path).name
    if inner == outer:
        return f"{name} ends in {outer} twice"
    written = FORMAT_WORDS[FORMATS[outer]]
    return f"{name}: only {outer} counts, so it would be {written}, not {inner}"


def default_save_name(source_spec: str, kind: str = "") -> str:
    """`alexnet` -> `alexnet-edited.pt`; `pkg.models:Net` -> `net-edited.pt`; a checkpoint
    `runs/best.pth` -> `runs/best-edited.pth`, beside it and in its format."""
    if kind == "checkpoint":
        path = Path(source_spec).expanduser()
        suffix = path.suffix.lower() if path.is_file() else ".safetensors"
        if suffix not in FORMATS:
            suffix = ".pt"
        name = path.stem if path.is_file() else path.name
        return str(path.with_name(f"{name or 'model'}-edited{suffix}"))
    name = source_spec.rpartition(":")[2] or source_spec
    name = Path(name).stem or "model"
    if kind == "huggingface":  # the config.json of a model folder: name it after the folder
        name = Path(source_spec).parent.name or "model"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.lower())
    return f"{safe or 'model'}-edited.pt"
