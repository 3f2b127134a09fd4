"""The sha256 of a file: of the bytes on their way into it while it is written, or read back."""

from __future__ import annotations

import bisect
import hashlib
import mmap
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
import torch

HASH_CHUNK = 1 << 22
# Writes this large are hashed on another thread while they are written.
HASH_BESIDE_BYTES = 1 << 20

Progress = Callable[[float], None]
"""Called with the fraction written so far, 0.0 to 1.0."""


class MemoryRanges:
    """The address ranges of tensors' storages, to tell whether a buffer lies inside one."""

    def __init__(self, tensors: Iterable[torch.Tensor]) -> None:
        spans = sorted(
            {
                (storage.data_ptr(), storage.data_ptr() + storage.nbytes())
                for storage in (t.untyped_storage() for t in tensors if t.device.type == "cpu")
                if storage.nbytes() > 0
            }
        )
        self.starts = [start for start, _ in spans]
        self.ends = [end for _, end in spans]

    def holds(self, data: memoryview) -> bool:
        start = int(np.frombuffer(data, dtype=np.uint8).ctypes.data)
        at = bisect.bisect_right(self.starts, start) - 1
        return at >= 0 and start + len(data) <= self.ends[at]


class HashingWriter:
    """A write-only file object that hashes what passes through it and reports how much has.

    The hash runs on its own thread, in the order of the writes; hashlib and the file's write
    both leave the GIL, so the hash costs little beside the write into the page cache and
    torch.save's own CRC. A buffer that lies in the tensors being saved (`owned`, held for the
    whole save) is hashed whenever the thread reaches it: the writes do not wait. Any other
    buffer torch lends is copied if small, or hashed before its write returns, since torch may
    free it after.
    """

    def __init__(
        self, handle: IO[bytes], total: int, progress: Progress | None, owned: MemoryRanges
    ) -> None:
        self.handle = handle
        self._digest = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._owned = owned
        self.written = 0
        self.total = max(total, 1)
        self.progress = progress

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data)
        size = view.nbytes
        if size >= HASH_BESIDE_BYTES and self._owned.holds(view):
            self._pool.submit(self._digest.update, view)
            self.handle.write(view)
        elif size >= HASH_BESIDE_BYTES:
            hashed: Future[None] = self._pool.submit(self._digest.update, view)
            try:
                self.handle.write(view)
            finally:
                hashed.result()
        else:
            self._pool.submit(self._digest.update, bytes(view))
            self.handle.write(view)
        self.written += size
        if self.progress is not None:
            self.progress(min(self.written / self.total, 1.0))
        return size

    def flush(self) -> None:
        self.handle.flush()

    def hexdigest(self) -> str:
        """The hash of everything written; waits for the hashing thread to catch up."""
        self._pool.shutdown(wait=True)
        return self._digest.hexdigest()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def file_sha256(path: Path) -> str:
    """The file's sha256, read through a memory map: no copy of each chunk, and the pages the
    read-back comparison maps at the same time are faulted in once for both."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return digest.hexdigest()
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                for start in range(0, len(view), HASH_CHUNK):
                    digest.update(view[start : start + HASH_CHUNK])
            finally:
                view.release()
    return digest.hexdigest()
