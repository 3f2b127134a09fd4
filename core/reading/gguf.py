"""GGUF files and split sets: tensor records, GGML types and metadata, read without torch.

One file is parsed by `core.reading.gguf_header`; a split set (`model-00001-of-00003.gguf`,
...) is read from any of its parts: every part for its tensors, the first for the metadata, and
each part's `split.*` entries checked against its name.
"""

from __future__ import annotations

import re
from pathlib import Path

from modelbrowse.core.reading.gguf_header import (
    GGUFArray,
    GGUFContents,
    Value,
    read_gguf_file,
)
from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.units import printable

__all__ = ["GGUFArray", "GGUFContents", "Value", "read_gguf", "split_parts"]

_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def split_parts(path: Path) -> list[Path]:
    """Every part of the split set `path` belongs to (`-00002-of-00003.gguf`), in order; the
    path alone when it is not one. A missing part is a one-line ReadError."""
    match = _SPLIT.match(path.name)
    if match is None:
        return [path]
    count = int(match["count"])
    if count < 1 or not 1 <= int(match["no"]) <= count:
        raise ReadError(f"{path}: part {int(match['no'])} of {count} is not a part of a split set")
    stem, suffix = match["stem"], path.name[-5:]
    parts = [
        path.with_name(f"{stem}-{no:05d}-of-{count:05d}{suffix}") for no in range(1, count + 1)
    ]
    missing = [p for p in parts if not p.is_file()]
    if missing:
        shown = ", ".join(p.name for p in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ReadError(
            f"{path} is part of a split GGUF set of {count} files, and {len(missing)} are "
            f"missing beside it: {printable(shown)}"
        )
    return parts


def read_gguf(path: Path, limits: Limits = DEFAULT_LIMITS) -> GGUFContents:
    """A GGUF file, or every part of its split set, checked; else a one-line ReadError."""
    parts = split_parts(path)
    first = read_gguf_file(parts[0], limits)
    if len(parts) == 1:
        return first
    _check_part(first, 0, len(parts))
    contents = GGUFContents(list(parts), first.version, first.metadata, alignment=first.alignment)
    for number, part in enumerate(parts):
        one = first if number == 0 else read_gguf_file(part, limits)
        if number:
            _check_part(one, number, len(parts))
        for name, record in one.tensors.items():
            if name in contents.tensors:
                raise ReadError(
                    f"{part} is a damaged GGUF split: the tensor {_quoted(name)} is also in "
                    "an earlier part"
                )
            contents.tensors[name] = record
            contents.types[name] = one.types[name]
    declared = first.metadata.get("split.tensors.count")
    if isinstance(declared, int) and declared != len(contents.tensors):
        raise ReadError(
            f"{parts[0]}: the split set declares {declared:,} tensors but its parts hold "
            f"{len(contents.tensors):,}"
        )
    return contents


def _check_part(contents: GGUFContents, number: int, count: int) -> None:
    path = contents.files[0]
    no, total = contents.metadata.get("split.no"), contents.metadata.get("split.count")
    if total is not None and total != count:
        raise ReadError(f"{path} says it is one of {total} split parts, its name one of {count}")
    if no is not None and no != number:
        raise ReadError(f"{path} says it is split part {no}, its name part {number}")


def _quoted(name: str) -> str:
    return repr(printable(name, 80))
