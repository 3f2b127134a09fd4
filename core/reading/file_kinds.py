"""What a file is, told from its first bytes before any loader runs.

A loader given the wrong file fails with its own confusing message (or, for a pickle, runs code);
naming the file's real kind first gives the user one clear line.
"""

from __future__ import annotations

import enum
import stat
from pathlib import Path

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError
from modelbrowse.core.reading.onnx_model import onnx_problem
from modelbrowse.core.reading.safetensors_header import read_header
from modelbrowse.core.reading.structured_text import parse_json
from modelbrowse.core.reading.zip_members import ZipMembers
from modelbrowse.core.units import printable

# The first object in a legacy (pre-1.6) torch file is this magic number, pickled.
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


class FileKind(enum.Enum):
    """The kinds of file `sniff` tells apart; the value is how a message names it."""

    TORCH_ZIP = "a torch.save archive"
    TORCHSCRIPT = "a TorchScript archive"
    TORCH_LEGACY = "a legacy (pre-1.6) torch file"
    PICKLE = "a Python pickle"
    SAFETENSORS = "a safetensors file"
    ONNX = "an ONNX model"
    GGUF = "a GGUF file"


def sniff(path: Path, limits: Limits = DEFAULT_LIMITS) -> FileKind:
    """The kind of a model file, or a ReadError saying what the file is instead."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            # Opening a FIFO waits for a writer; a device may never end: refuse before reading.
            raise ReadError(f"{path} is {_special_kind(info.st_mode)}, not a file")
        size = info.st_size
        with path.open("rb") as handle:
            head = handle.read(4096)
    except IsADirectoryError:
        raise ReadError(f"{path} is a directory") from None
    except OSError as exc:
        raise ReadError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise ReadError(f"{path} is empty (0 bytes)")
    if head.startswith(b"GGUF"):
        return FileKind.GGUF  # its header is checked as it is read
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_kind(path, limits)
    # safetensors first: a header of 128, 384, ... bytes starts with the pickle protocol bytes
    safetensors = _safetensors_problem(path, head, size, limits)
    if safetensors is None:
        return FileKind.SAFETENSORS
    looks_pickled = head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5
    if safetensors and not looks_pickled:
        raise ReadError(f"{path} is a damaged safetensors file: {safetensors}")
    if looks_pickled:
        return FileKind.TORCH_LEGACY if _LEGACY_MAGIC in head[:32] else FileKind.PICKLE
    onnx = onnx_problem(head, size)
    if onnx is None:
        return FileKind.ONNX
    if onnx:
        raise ReadError(f"{path} is a damaged ONNX model: {onnx}")
    raise ReadError(f"{path} is {_describe_other(head)}, not a model checkpoint")


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _zip_kind(path: Path, limits: Limits) -> FileKind:
    with ZipMembers(path, limits=limits) as archive:
        names = archive.names
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        return FileKind.TORCHSCRIPT
    if any(name.endswith("data.pkl") for name in names):
        return FileKind.TORCH_ZIP
    shown = ", ".join(printable(name, 60) for name in names[:3]) + (
        ", ..." if len(names) > 3 else ""
    )
    held = f"it holds {shown}" if names else "it holds no files"
    raise ReadError(f"{path} is a zip archive but not a torch checkpoint ({held})")


def _safetensors_problem(path: Path, head: bytes, size: int, limits: Limits) -> str | None:
    """None for what opens as safetensors; '' when not safetensors at all; else the damage.

    The header is parsed (by `read_header`, when the file opens) only once; here it is parsed
    only where the first bytes could also start a pickle."""
    if len(head) < 9 or head[8:9] != b"{":
        return ""
    length = int.from_bytes(head[:8], "little")
    if length > limits.header_bytes:
        return ""
    if 8 + length > size:
        return f"its header says {length:,} bytes but the file has {size - 8:,} (truncated?)"
    if head[:1] != b"\x80":
        return None
    try:
        read_header(path, limits)
    except ReadError as exc:
        return str(exc).rpartition(": ")[2] or "its header is damaged"
    return None


def _describe_other(head: bytes) -> str:
    text = head.lstrip()
    lower = text[:200].lower()
    if lower.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer (run `git lfs pull` to fetch the real file)"
    if lower.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head")):
        return "an HTML page (a download that saved a web page?)"
    if head[257:262] == b"ustar":
        return "a tar archive (the first torch format, before 0.4, is not read)"
    if text[:1] in (b"{", b"["):
        try:
            parse_json(head, "the sample")
        except ReadError:
            return "a text file (JSON?)" if _is_text(head) else "binary data of unknown kind"
        return "a JSON file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip file (unpack it first)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (Keras?)"
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
