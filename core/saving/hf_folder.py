"""A Hugging Face model folder written shard by shard, in bounded memory, as one transaction.

The tensors come from an iterable read lazily; at most one shard's tensors are held at a time,
each shard written straight from the tensors' memory (no copy of its bytes), synced and read back.
The folder is built inside a private temporary folder beside the target (the same hidden names
a file save uses, so a killed save's leftovers are cleared the same way) and renamed into
place at the end: an existing folder is swapped out only once the new one is complete.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import math
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from modelbrowse.core.errors import UsageError
from modelbrowse.core.nodes import quantization_of
from modelbrowse.core.reading.safetensors_header import SAFETENSORS_DTYPES
from modelbrowse.core.saving.transaction import (
    SaveError,
    _fsync_directory,
    _fsync_file,
    _lock_path,
    _make_work_folder,
    _take_lock,
    as_save_error,
    remove_leftovers,
)

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
CONFIG = "config.json"
DEFAULT_SHARD_SIZE = 5 * 10**9

# What a model folder keeps beside its weights and config: tokenizers, generation and
# processor settings. Copied as bytes, never read.
_COPIED = re.compile(
    r"tokenizer.*|special_tokens_map\.json|added_tokens\.json|generation_config\.json"
    r"|vocab\.(json|txt)|merges\.txt|.*\.tiktoken|chat_template.*|spiece\.model"
    r"|sentencepiece\..*\.model|(preprocessor|processor|image_processor)_config\.json"
)
# The files that make an existing folder one this writer may replace.
_MODEL_FILES = re.compile(r"config\.json|.*\.safetensors(\.index\.json)?|pytorch_model.*\.bin")
_DTYPE_CODES = {name: code for code, name in SAFETENSORS_DTYPES.items()}
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


@dataclass(frozen=True)
class FolderReport:
    folder: Path
    shards: int
    tensors: int
    bytes: int  # the tensors' bytes, as the index's total_size
    seconds: float = 0.0

    def summary(self) -> str:
        from modelbrowse.core.units import human_bytes

        shards = "1 shard" if self.shards == 1 else f"{self.shards} shards"
        return (
            f"wrote {self.folder} ({shards}, {self.tensors} tensors, "
            f"{human_bytes(self.bytes)}, {self.seconds:.1f} s)"
        )


def parse_size(text: str) -> int:
    """`5GB`, `500MB`, `2GiB`, `1000000` -> bytes (GB decimal, GiB binary, as transformers)."""
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


def write_hf_folder(
    target: Path,
    tensors: Iterable[tuple[str, torch.Tensor]],
    *,
    max_shard_size: int = DEFAULT_SHARD_SIZE,
    dtype: torch.dtype | None = None,
    config: dict[str, Any] | None = None,
    copy_from: Path | None = None,
    progress: Callable[[float], None] | None = None,
    total_bytes: int | None = None,
    verify: bool = True,
) -> FolderReport:
    """Write `tensors` as safetensors shards of at most `max_shard_size` bytes (a larger tensor
    gets a shard of its own) into the folder `target`, atomically.

    Shards are `model-0000k-of-0000n.safetensors` with `model.safetensors.index.json`, or one
    `model.safetensors` (and no index) as transformers writes them. Floating tensors are cast
    to `dtype` on the way. `config` is written as config.json (else `copy_from`'s is copied);
    tokenizer, generation and processor files are copied from `copy_from`. `progress` gets
    the share of `total_bytes` written, when that is given. Each shard is read back and
    compared unless `verify` is false.
    """
    start = time.perf_counter()
    target = Path(target).expanduser()
    _check_target(target)
    with as_save_error(target):
        lock = _take_lock(target)
    work: Path | None = None
    try:
        with as_save_error(target):
            remove_leftovers(target.parent)
            work = _make_work_folder(target)
            build = work / target.name
            os.mkdir(build)
            written = _Shards(build, max_shard_size, dtype, verify, progress, total_bytes)
            for name, tensor in tensors:
                written.add(name, tensor)
            written.finish()
            _write_extras(build, config, copy_from)
            _fsync_directory(build)
            _put_in_place(build, target, work)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            _lock_path(target).unlink()  # as a file save does: see `_take_lock`
        os.close(lock)
    if progress is not None:
        progress(1.0)
    return FolderReport(
        target, written.count, len(written.names), written.total, time.perf_counter() - start
    )


def _check_target(target: Path) -> None:
    if target.is_symlink():
        raise SaveError(f"cannot write {target}: it is a link; name the folder itself")
    if target.exists() and not target.is_dir():
        raise SaveError(f"cannot write {target}: it is a file, not a folder")
    if not target.parent.is_dir():
        raise SaveError(f"cannot write {target}: the directory {target.parent} does not exist")
    if target.is_dir():
        with as_save_error(target):
            names = [entry.name for entry in os.scandir(target)]
        if names and not any(_MODEL_FILES.fullmatch(name) for name in names):
            raise SaveError(
                f"cannot write {target}: it is a folder that holds no model "
                "(no config.json, no weights); name a new or empty folder"
            )


class _Shards:
    """The shards written so far and the one being filled."""

    def __init__(
        self,
        folder: Path,
        max_size: int,
        dtype: torch.dtype | None,
        verify: bool,
        progress: Callable[[float], None] | None,
        total_bytes: int | None,
    ) -> None:
        self.folder, self.max_size, self.dtype, self.verify = folder, max_size, dtype, verify
        self.progress, self.total_bytes = progress, total_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.names: dict[str, int] = {}  # name -> shard number, from 1
        self.count = 0
        self.total = 0
        self.params = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self.names or name in self.pending:
            raise SaveError(f"{name} is given twice")
        tensor = _prepared(name, tensor, self.dtype)
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_size:
            self._flush()
        self.pending[name] = tensor
        self.pending_bytes += size

    def _flush(self) -> None:
        self.count += 1
        path = self.folder / f"shard-{self.count:05d}.safetensors"
        _write_shard(path, self.pending)
        if self.verify:
            _verify_shard(path, self.pending)
        for name, tensor in self.pending.items():
            self.names[name] = self.count
            self.params += tensor.numel()
        self.total += self.pending_bytes
        self.pending, self.pending_bytes = {}, 0
        if self.progress is not None and self.total_bytes:
            self.progress(min(1.0, self.total / self.total_bytes))

    def finish(self) -> None:
        """Write the last shard and give every shard its final name (and the index)."""
        if self.pending or self.count == 0:
            self._flush()
        if self.count == 1:
            os.replace(self.folder / "shard-00001.safetensors", self.folder / SINGLE)
            return
        count = self.count
        final = {n: f"model-{n:05d}-of-{count:05d}.safetensors" for n in range(1, 1 + count)}
        for number, name in final.items():
            os.replace(self.folder / f"shard-{number:05d}.safetensors", self.folder / name)
        index = {
            "metadata": {"total_parameters": self.params, "total_size": self.total},
            "weight_map": {name: final[n] for name, n in sorted(self.names.items())},
        }
        _write_text(self.folder / INDEX, json.dumps(index, indent=2, sort_keys=True) + "\n")


def _prepared(name: str, tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """The tensor as it will be written: on the CPU, contiguous, cast; refused where it has
    no values or no safetensors dtype."""
    if not isinstance(name, str) or not name:
        raise SaveError(f"{name!r} is not a tensor name")
    if tensor.is_meta:
        raise SaveError(f"{name} has no values yet (it is on the meta device)")
    quantization = quantization_of(tensor)
    if quantization is not None:
        raise SaveError(
            f"{name} is a {quantization.scheme} weight: writing it would need it "
            "dequantized or re-quantized, which this app does not do"
        )
    tensor = tensor.detach()
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    if str(tensor.dtype).removeprefix("torch.") not in _DTYPE_CODES:
        raise SaveError(f"{name}: safetensors has no dtype for {tensor.dtype}")
    return tensor.to("cpu").contiguous()


def _write_shard(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """A safetensors file written from the tensors' own memory, then synced."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        header[name] = {
            "dtype": _DTYPE_CODES[str(tensor.dtype).removeprefix("torch.")],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the library writes
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text)
        for tensor in tensors.values():
            _write_bytes(handle, tensor)
        handle.flush()
        os.fsync(handle.fileno())


def _write_bytes(handle: BinaryIO, tensor: torch.Tensor) -> None:
    if tensor.numel() == 0:
        return
    data = tensor.reshape(-1).view(torch.uint8).numpy()
    handle.write(data.data)  # the tensor's memory, not a copy


def _verify_shard(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from modelbrowse.core.saving.weights import compare, read_weights

    problems = list(compare(tensors, read_weights(path, "safetensors")))
    if problems:
        raise SaveError(f"{path.name} did not read back the same: {problems[0]}")


def _write_extras(folder: Path, config: dict[str, Any] | None, copy_from: Path | None) -> None:
    if config is not None:
        _write_text(folder / CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
    if copy_from is None or not copy_from.is_dir():
        return
    for entry in sorted(copy_from.iterdir()):
        wanted = _COPIED.fullmatch(entry.name) or (config is None and entry.name == CONFIG)
        if wanted and entry.is_file():
            shutil.copyfile(entry, folder / entry.name)
            _fsync_file(folder / entry.name)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


# --- into place ------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _put_in_place(build: Path, target: Path, work: Path) -> None:
    """Rename the finished folder to `target`; an existing one is swapped with it in one step
    where the system allows (Linux's renameat2), else moved aside first and put back on
    failure. The old folder ends up in `work`, removed with it."""
    if not target.is_dir():
        os.rename(build, target)
    else:
        with contextlib.suppress(OSError):
            os.chmod(build, stat.S_IMODE(os.stat(target).st_mode))
        old = work / ".old"
        if _exchange(build, target):
            os.rename(build, old)  # `build` now names the old folder
        else:
            os.rename(target, old)
            try:
                os.rename(build, target)
            except OSError:
                os.rename(old, target)
                raise
    _fsync_directory(target.parent)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically; False where this system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code))
