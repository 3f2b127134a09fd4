"""What a file is, told from its first bytes before any loader runs.

A loader given the wrong file fails with its own confusing message (or, for a pickle, runs code);
naming the file's real kind first gives the user one clear line.
"""

from __future__ import annotations

import enum
import json
import stat
import struct
import zipfile
import zlib
from pathlib import Path

from modelbrowse.core.errors import SourceError
from modelbrowse.core.units import printable

# What reading a damaged zip archive raises: NotImplementedError for a header claiming a zip
# version from the future, zlib.error for a compressed entry cut or flipped.
ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    OSError,
    ValueError,
    NotImplementedError,
    EOFError,
    zlib.error,
)
# The first object in a legacy (pre-1.6) torch file is this magic number, pickled.
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_SAFETENSORS_HEADER_LIMIT = 100_000_000


class FileKind(enum.Enum):
    """The kinds of file `sniff` tells apart; the value is how a message names it."""

    TORCH_ZIP = "a torch.save archive"
    TORCHSCRIPT = "a TorchScript archive"
    TORCH_LEGACY = "a legacy (pre-1.6) torch file"
    PICKLE = "a Python pickle"
    SAFETENSORS = "a safetensors file"


def sniff(path: Path) -> FileKind:
    """The kind of a model file, or a SourceError saying what the file is instead."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            # Opening a FIFO waits for a writer; a device may never end: refuse before reading.
            raise SourceError(f"{path} is {_special_kind(info.st_mode)}, not a file")
        size = info.st_size
        with path.open("rb") as handle:
            head = handle.read(4096)
    except IsADirectoryError:
        raise SourceError(f"{path} is a directory") from None
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise SourceError(f"{path} is empty (0 bytes)")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(path)
    # safetensors first: a header of 128, 384, ... bytes starts with the pickle protocol bytes
    safetensors = _safetensors_problem(path, head, size)
    if safetensors is None:
        return FileKind.SAFETENSORS
    looks_pickled = head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5
    if safetensors and not looks_pickled:
        raise SourceError(f"{path} is a damaged safetensors file: {safetensors}")
    if looks_pickled:
        return FileKind.TORCH_LEGACY if _LEGACY_MAGIC in head[:32] else FileKind.PICKLE
    raise SourceError(f"{path} is {_describe_other(head)}, not a model checkpoint")


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _zip_kind(path: Path) -> FileKind:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except ZIP_READ_ERRORS:
        raise SourceError(
            f"{path} is a truncated or damaged zip archive (a torch file cut short?)"
        ) from None
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        return FileKind.TORCHSCRIPT
    if any(name.endswith("data.pkl") for name in names):
        return FileKind.TORCH_ZIP
    shown = ", ".join(printable(name, 60) for name in names[:3]) + (
        ", ..." if len(names) > 3 else ""
    )
    held = f"it holds {shown}" if names else "it holds no files"
    raise SourceError(f"{path} is a zip archive but not a torch checkpoint ({held})")


def _safetensors_problem(path: Path, head: bytes, size: int) -> str | None:
    """None for a sound safetensors header; '' when not safetensors at all; else the damage."""
    if len(head) < 9 or head[8:9] != b"{":
        return ""
    (length,) = struct.unpack("<Q", head[:8])
    if length > _SAFETENSORS_HEADER_LIMIT:
        return ""
    if 8 + length > size:
        return f"its header says {length} bytes but the file has {size - 8} (truncated?)"
    raw = head[8 : 8 + length]
    if len(raw) < length:
        try:
            with path.open("rb") as handle:
                handle.seek(8)
                raw = handle.read(length)
        except OSError as exc:
            return f"cannot read its header: {exc.strerror or exc}"
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "its header is not valid JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    data_end = max(
        (
            int(entry["data_offsets"][1])
            for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and _has_offsets(entry)
        ),
        default=0,
    )
    if 8 + length + data_end > size:
        missing = 8 + length + data_end - size
        return f"its tensors need {missing} bytes more than the file has (truncated?)"
    return None


def _has_offsets(entry: dict[str, object]) -> bool:
    offsets = entry.get("data_offsets")
    return isinstance(offsets, list) and len(offsets) == 2 and isinstance(offsets[1], int)


def _describe_other(head: bytes) -> str:
    text = head.lstrip()
    lower = text[:200].lower()
    if lower.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (run `git lfs pull` to fetch the real file)"
    if lower.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return "an HTML page (a download that saved a web page?)"
    if text[:1] in (b"{", b"["):
        try:
            json.loads(head.decode("utf-8"))
        except ValueError:
            return "a text file (JSON?)" if _is_text(head) else "binary data of unknown kind"
        return "a JSON file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file (unpack it first)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (Keras?)"
    if head.startswith(b"\x08") and b"onnx" in head[:64].lower():
        return "an ONNX model"
    if _is_text(head):
        return "a text file"
    return "binary data of unknown kind"


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not merely a character cut at the end of the sample
            return False
        text = head[: exc.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\n\r\t" for ch in text)
