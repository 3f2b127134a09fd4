"""Tensors from the reading layer's records: the file's bytes mapped, never parsed by torch.

Each file is mapped once, privately (copy-on-write: writes stay in this process, never reach the
file), and each storage is a slice of that map, so a tensor's bytes are read from disk only when
its values are used and saving writes each storage alone. Records were checked against their
storage and the file when they were read.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import torch

from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.records import StorageRef, TensorRecord


def torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ReadError(f"this torch has no dtype {name}")
    return dtype


class FileMaps:
    """One private map per file, and one storage per storage record, made on first use."""

    def __init__(self) -> None:
        self._files: dict[str, torch.UntypedStorage] = {}
        self._storages: dict[tuple[str, str, int], torch.UntypedStorage] = {}
        self._moved: dict[tuple[str, str, int, str], torch.UntypedStorage] = {}
        self._lock = threading.Lock()

    def storage(self, ref: StorageRef) -> torch.UntypedStorage:
        key = (ref.file, ref.key, ref.start)
        with self._lock:
            found = self._storages.get(key)
            if found is None:
                if ref.nbytes == 0:
                    found = torch.UntypedStorage(0)  # type: ignore[no-untyped-call]
                else:
                    whole = self._file(ref.file, ref.start + ref.nbytes)
                    found = whole[ref.start : ref.start + ref.nbytes]
                self._storages[key] = found
            return found

    def _copy(self, ref: StorageRef) -> torch.UntypedStorage:
        key = (ref.file, ref.key, ref.start, "copy")
        with self._lock:
            found = self._moved.get(key)
            if found is None:
                found = self._moved[key] = _copied(ref)
            return found

    def _file(self, file: str, needed: int) -> torch.UntypedStorage:
        mapped = self._files.get(file)
        if mapped is None:
            try:
                size = os.stat(file).st_size
            except OSError as exc:
                raise ReadError(f"cannot read {file}: {exc.strerror or exc}") from None
            if size < needed:
                raise ReadError(
                    f"{file} is shorter than its tensors need ({size:,} of {needed:,} bytes): "
                    "changed or cut since it was opened?"
                )
            mapped = cast(
                torch.UntypedStorage,
                torch.UntypedStorage.from_file(file, shared=False, nbytes=size),
            )
            self._files[file] = mapped
        if mapped.nbytes() < needed:
            raise ReadError(f"{file}: a storage lies past the end of the file")
        return mapped

    def tensor(self, record: TensorRecord, device: str = "cpu") -> torch.Tensor:
        """The record's tensor, on the CPU a view of the mapped file where alignment allows;
        on another device each storage is copied there once, so views of it stay views."""
        dtype = torch_dtype(record.dtype)
        if record.storage.start % record.itemsize:
            # A view needs the storage aligned to its element size: this one is copied, once.
            storage = self._copy(record.storage)
        else:
            storage = self.storage(record.storage)
        if device != "cpu":
            key = (record.storage.file, record.storage.key, record.storage.start, device)
            with self._lock:
                moved = self._moved.get(key)
                if moved is None:
                    moved = storage.to(device=device)  # type: ignore[call-overload]
                    self._moved[key] = moved
            storage = moved
        return torch.empty(0, dtype=dtype, device=storage.device).set_(
            storage, record.offset, record.shape, record.stride
        )


def _copied(ref: StorageRef) -> torch.UntypedStorage:
    with Path(ref.file).open("rb") as handle:
        handle.seek(ref.start)
        data = bytearray(handle.read(ref.nbytes))
    if len(data) != ref.nbytes:
        raise ReadError(f"{ref.file} ends before the data of {ref.key} (truncated?)")
    return torch.frombuffer(data, dtype=torch.uint8).untyped_storage()


def tensors_of(
    records: Mapping[str, TensorRecord], device: str = "cpu", maps: FileMaps | None = None
) -> dict[str, torch.Tensor]:
    """Every record as a tensor; records of one storage share it (ties stay ties)."""
    maps = maps or FileMaps()
    return {key: maps.tensor(record, device) for key, record in records.items()}
