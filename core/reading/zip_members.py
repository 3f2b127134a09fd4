"""Zip archives (torch.save and TorchScript files) read as data: member bytes and locations.

`zipfile` parses the central directory; before it does, the entry count is read from the
end-of-directory record and refused past a limit (each entry costs a Python object). Members are
read with a bound on what they may inflate to, and a stored member's data is located in the file
(its local header parsed here) so that it can be mapped instead of read.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbrowse.core.reading.limits import DEFAULT_LIMITS, Limits, ReadError

# What reading a damaged archive raises: NotImplementedError for a zip version from the
# future, zlib.error for a compressed entry cut or flipped.
ZIP_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    ValueError,
    NotImplementedError,
    EOFError,
    KeyError,
    zlib.error,
    struct.error,
)
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature ... name length, extra length


@dataclass(frozen=True)
class Location:
    """A stored member's bytes: `nbytes` from byte `start` of the archive file."""

    start: int
    nbytes: int


class ZipMembers:
    """The members of one zip archive; use as a context manager.

    `span` (start, length) reads an archive embedded in a larger file (a chunk of a distributed
    checkpoint); offsets and locations are then still of the whole file."""

    def __init__(
        self,
        path: Path,
        where: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        span: tuple[int, int] | None = None,
    ):
        self.path = path
        self.where = where or str(path)
        self.limits = limits
        self.base = span[0] if span else 0
        try:
            self.size = path.stat().st_size
            if span is not None:
                if span[0] < 0 or span[1] < 0 or span[0] + span[1] > self.size:
                    raise ReadError(f"{self.where} lies past the end of {path.name} (truncated?)")
                self.size = span[0] + span[1]
            count = _declared_entries(path, self.size, self.base)
            if count is not None and count > limits.zip_members:
                raise ReadError(
                    f"{self.where} is a zip archive of {count:,} entries; at most "
                    f"{limits.zip_members:,} are read"
                )
            self._window = None if span is None else _Window(path, *span)
            self._zip = zipfile.ZipFile(path if self._window is None else self._window)
            self.infos = {info.filename: info for info in self._zip.infolist()}
        except ReadError:
            self._close_window()
            raise
        except ZIP_READ_ERRORS:
            self._close_window()
            raise ReadError(
                f"{self.where} is a truncated or damaged zip archive (a file cut short?)"
            ) from None

    def _close_window(self) -> None:
        window = getattr(self, "_window", None)
        if window is not None:
            window.close()

    def __enter__(self) -> ZipMembers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._close_window()

    @property
    def names(self) -> list[str]:
        return list(self.infos)

    def read(self, name: str, limit: int) -> bytes:
        """A member's bytes, refused when it declares or inflates to more than `limit`."""
        info = self.infos.get(name)
        if info is None:
            raise ReadError(f"{self.where} has no member {name!r}")
        if info.file_size > limit:
            raise ReadError(
                f"{self.where}: {name} declares {info.file_size:,} bytes; at most {limit:,} "
                "are read"
            )
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > 0:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > 1000:
                raise ReadError(
                    f"{self.where}: {name} inflates {ratio:,.0f} times (a zip bomb?); refused"
                )
        try:
            with self._zip.open(info) as handle:
                data = handle.read(limit + 1)
        except ZIP_READ_ERRORS:
            raise ReadError(
                f"{self.where}: {name} is damaged (changed or cut since it was written?)"
            ) from None
        if len(data) > limit:
            raise ReadError(f"{self.where}: {name} inflates past {limit:,} bytes; refused")
        return data

    def location(self, name: str) -> Location:
        """Where a stored (uncompressed) member's bytes lie in the file."""
        info = self.infos.get(name)
        if info is None:
            raise ReadError(f"{self.where} has no member {name!r}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ReadError(
                f"{self.where}: {name} is compressed; tensor data must be stored as it is"
            )
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.base + info.header_offset)
                header = handle.read(_LOCAL_HEADER.size)
        except OSError as exc:
            raise ReadError(f"cannot read {self.where}: {exc.strerror or exc}") from None
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise ReadError(f"{self.where}: the local header of {name} is damaged")
        fields = _LOCAL_HEADER.unpack(header)
        start = self.base + info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
        if start + info.file_size > self.size:
            raise ReadError(
                f"{self.where}: {name} runs {start + info.file_size - self.size:,} bytes past "
                "the end of the file (truncated?)"
            )
        return Location(start, info.file_size)


def _declared_entries(path: Path, size: int, base: int = 0) -> int | None:
    """The entry count the end-of-directory record declares (zip64 too), or None if not found.
    The archive is bytes [base, size) of the file."""
    tail_size = min(size - base, 65_536 + 22)
    with open(path, "rb") as handle:
        handle.seek(size - tail_size, os.SEEK_SET)
        tail = handle.read(tail_size)
        at = tail.rfind(_EOCD)
        if at < 0 or at + 22 > len(tail):
            return None
        count = int(struct.unpack_from("<H", tail, at + 10)[0])
        locator = at - 20
        if count == 0xFFFF and locator >= 0 and tail[locator : locator + 4] == _EOCD64_LOCATOR:
            offset = base + int(struct.unpack_from("<Q", tail, locator + 8)[0])
            if offset + 56 > size:
                return None
            handle.seek(offset)
            record = handle.read(56)
            if record[:4] == b"PK\x06\x06":
                count = int(struct.unpack_from("<Q", record, 32)[0])
        return count


class _Window(io.RawIOBase):
    """Bytes [start, start + length) of a file, as a file of their own (for `zipfile`)."""

    def __init__(self, path: Path, start: int, length: int) -> None:
        super().__init__()
        self._handle = path.open("rb")
        self._start = start
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        origin = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._length}[whence]
        self._pos = max(0, origin + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._length - self._pos))
        self._handle.seek(self._start + self._pos)
        got = self._handle.readinto(view[:count])
        self._pos += got
        return got

    def close(self) -> None:
        self._handle.close()
        super().close()
