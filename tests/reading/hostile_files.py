"""Builders of hostile weight files, each small, each made here by hand or with torch.save."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import torch

from tests.core.test_core_checkpoints import RunsCode


def torch_zip(path: Path, pickle_bytes: bytes, members: dict[str, bytes] | None = None) -> Path:
    """A torch.save-shaped archive holding the given data.pkl (and storages), all stored."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", b"little")
        for name, data in (members or {}).items():
            archive.writestr(f"archive/{name}", data)
        archive.writestr("archive/version", b"3\n")
    return path


def rewritten(path: Path, change: dict[str, bytes | None]) -> Path:
    """The archive at `path` with members replaced (None: removed), written again in place."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            key = name.partition("/")[2]
            new = change.get(key, data)
            if new is not None:
                archive.writestr(name, new)
    return path


def code_running_pt(path: Path, marker: Path, legacy: bool = False) -> Path:
    torch.save(
        {"weight": torch.ones(2), "extra": RunsCode(marker)},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    return path


def dag_pickle(levels: int) -> bytes:
    """A dict of two keys both naming the dict one level down: 2**levels paths, ~40 B/level."""

    def put(i: int) -> bytes:
        return b"r" + struct.pack("<I", i)

    def get(i: int) -> bytes:
        return b"j" + struct.pack("<I", i)

    out = [b"\x80\x02}", put(0), b"0"]
    for level in range(1, levels + 1):
        out += [b"}", put(level), b"(X\x01\x00\x00\x00a", get(level - 1)]
        out += [b"X\x01\x00\x00\x00b", get(level - 1), b"u0"]
    out += [get(levels), b"."]
    return b"".join(out)


def deep_pickle(depth: int) -> bytes:
    """`{'a': {'a': ... {}}}`, `depth` levels, built without recursion."""
    return b"\x80\x02" + b"}X\x01\x00\x00\x00a" * depth + b"}" + b"s" * depth + b"."


def cycle_pickle() -> bytes:
    """`d = {}; d['self'] = d`."""
    return b"\x80\x02}q\x00X\x04\x00\x00\x00selfh\x00s."


def zip_bomb(path: Path, inflated: int = 64 << 20) -> Path:
    """A torch archive whose data.pkl is a few kilobytes deflated, `inflated` bytes inflated."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    packed = b"".join(squeeze.compress(chunk) for _ in range(inflated >> 20)) + squeeze.flush()
    crc = 0
    for _ in range(inflated >> 20):
        crc = zlib.crc32(chunk, crc)
    version = b"3\n"
    hand_zip(
        path,
        [
            ("archive/version", version, 0, zlib.crc32(version), len(version)),
            ("archive/data.pkl", packed, 8, crc, inflated),
        ],
    )
    return path


def hand_zip(path: Path, entries: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip of (name, data as stored, method, crc, inflated size): zipfile would compress
    the data itself, and a bomb's deflated bytes are made in a stream."""
    body = io.BytesIO()
    directory = io.BytesIO()
    for name, data, method, crc, size in entries:
        filename = name.encode()
        offset = body.tell()
        body.write(
            struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size,
                        len(filename), 0)
        )  # fmt: skip
        body.write(filename + data)
        directory.write(
            struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data),
                        size, len(filename), 0, 0, 0, 0, 0, offset)
        )  # fmt: skip
        directory.write(filename)
    end = struct.pack(
        "<4s4H2LH",
        b"PK\x05\x06", 0, 0, len(entries), len(entries), directory.tell(), body.tell(), 0,
    )  # fmt: skip
    path.write_bytes(body.getvalue() + directory.getvalue() + end)


def safetensors_bytes(header: Mapping[str, object] | bytes, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def safetensors_with_metadata(metadata: dict[str, str]) -> bytes:
    header = {
        "__metadata__": metadata,
        "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    return safetensors_bytes(header, struct.pack("<2f", 1.0, 2.0))
