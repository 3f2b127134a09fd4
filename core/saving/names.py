"""The file names a save accepts, without torch: the write dialog and the help read them."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from modelbrowse.core.errors import UsageError

# The extension decides the format: torch.save's zip for all but `.safetensors`.
FORMATS = {".pt": "pt", ".pth": "pt", ".bin": "pt", ".ckpt": "pt", ".safetensors": "safetensors"}
FORMAT_WORDS = {"pt": "a torch.save zip", "safetensors": "safetensors"}
# Size units as transformers reads `max_shard_size`: GB decimal, GiB binary.
_UNITS: dict[str, int] = {"": 1, "b": 1} | {
    f"{letter}{unit}": (1024 if unit == "ib" else 1000) ** power
    for power, letter in enumerate("kmgt", 1)
    for unit in ("", "b", "ib")
}


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


def is_folder_target(path: str | os.PathLike[str]) -> bool:
    """Whether a save to `path` writes a folder (a Hugging Face model folder): it is one
    already, or its name ends in `/` or in no weights extension."""
    text = os.fspath(path)
    found = Path(text).expanduser()
    return found.is_dir() or text.endswith("/") or found.suffix.lower() not in FORMATS


def default_folder_name(source_spec: str) -> str:
    """`runs/llama` (a folder, or a file in it) -> `runs/llama-edited`, a folder beside it."""
    path = Path(source_spec).expanduser()
    folder = path if path.is_dir() or not path.suffix else path.parent
    return str(folder.with_name(f"{folder.name or 'model'}-edited"))


def parse_size(text: str) -> int:
    """`5GB`, `500MB`, `2GiB`, `1000000` -> bytes; a UsageError for anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise UsageError(
            f"{text!r} is not a size: use a number of bytes or one like 500MB, 5GB or 2GiB"
        )
    size = math.floor(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise UsageError(f"{text!r} is not a size: it must be at least one byte")
    return size


def replaces_an_input(output: str | os.PathLike[str], inputs: dict[str, Path]) -> str | None:
    """Why writing `output` would replace what the command reads (`inputs`: what each is
    called -> its path), or None: an output that is an input, a folder that holds one, or a
    file that an input folder holds would be replaced by the result."""
    target = Path(output).expanduser().resolve()
    for what, given in inputs.items():
        path = Path(given).expanduser().resolve()
        if target == path:
            relation = "is"
        elif target in path.parents:
            relation = "holds"
        elif path in target.parents and target.exists():  # a file the input folder holds
            relation = "is part of"
        else:
            continue
        return f"cannot write {output}: it {relation} the {what} this reads; name another path"
    return None
