"""`BASE --merge ADAPTER --output OUT`: the merged tensors streamed shard by shard into one
file or a Hugging Face folder, atomically.

Only one base file is mapped at a time, and the pages of each tensor are handed back to the
kernel once it is written (they are clean pages of a private map: dropping them loses nothing),
so the memory in use is one tensor and its update, whatever the model's size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from modelbrowse.core.merge.compute import merged_tensor
from modelbrowse.core.merge.files import Entry, write_safetensors, write_torch
from modelbrowse.core.merge.plan import MergeError, MergePlan, open_shard, plan_merge
from modelbrowse.core.saving.names import FORMATS, extensions_text, replaces_an_input
from modelbrowse.core.saving.transaction import write_atomic
from modelbrowse.core.tensor_bytes import _file_mappings

Progress = Callable[[float], None]


class MergeCancelled(MergeError):
    """The merge was stopped before it finished; nothing was written."""


@dataclass(frozen=True)
class MergeReport:
    output: Path
    tensors: int
    updated: int
    replaced: int
    nbytes: int
    seconds: float

    def summary(self) -> str:
        from modelbrowse.core.units import human_bytes

        copies = f", {self.replaced} replaced by the adapter's copies" if self.replaced else ""
        return (
            f"merged into {self.output}: {self.updated} weights updated{copies}, "
            f"{self.tensors} tensors, {human_bytes(self.nbytes)}, {self.seconds:.1f} s"
        )


def merge_adapter(
    base: Path,
    adapter: Path,
    output: Path,
    *,
    dtype: torch.dtype | None = None,
    max_shard_size: int | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> MergeReport:
    """Merge `adapter` into `base` and write the result to `output` (a `.safetensors` or
    `.pt` file, else a Hugging Face folder)."""
    start = time.perf_counter()
    output = Path(output).expanduser()
    is_file = output.suffix.lower() in FORMATS
    if not is_file and output.suffix and not output.is_dir():
        raise MergeError(f"--output {output.name}: name a file ({extensions_text()}) or a folder")
    problem = replaces_an_input(output, {"base": Path(base), "adapter": Path(adapter)})
    if problem is not None:
        raise MergeError(problem)
    plan = plan_merge(base, adapter)
    entries, aliases = _entries(plan, dtype)
    tensors = merged_tensors(plan, dtype, progress, cancel)
    if is_file:
        writer = write_torch if FORMATS[output.suffix.lower()] == "pt" else write_safetensors
        written: list[int] = []
        write_atomic(output, lambda tmp: written.append(writer(tmp, entries, aliases, tensors)))
        nbytes = output.stat().st_size
    else:
        nbytes = _write_folder(plan, output, tensors, dtype, max_shard_size)
    if progress is not None:
        progress(1.0)
    updated = len(plan.updates) + len(plan.bias_updates)
    return MergeReport(
        output,
        len(entries) + len(aliases),
        updated,
        len(plan.replaced),
        nbytes,
        time.perf_counter() - start,
    )


def _entries(plan: MergePlan, dtype: torch.dtype | None) -> tuple[list[Entry], dict[str, str]]:
    """Every key the output holds, in order, with its shape and dtype; and the tied keys."""
    entries: list[Entry] = []
    aliases: dict[str, str] = {}
    for shard in plan.shards:
        for key, (shape, found) in shard.entries.items():
            entries.append((key, shape, _output_dtype(found, dtype)))
        aliases.update(shard.aliases)
    return entries, aliases


def _output_dtype(found: torch.dtype, dtype: torch.dtype | None) -> torch.dtype:
    return dtype if dtype is not None and found.is_floating_point else found


def merged_tensors(
    plan: MergePlan,
    dtype: torch.dtype | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Each base key and its merged tensor, shard after shard; a shard's file is let go before
    the next is mapped, and each tensor's pages once it has been used."""
    total = max(plan.total_bytes, 1)
    done = 0
    for shard in plan.shards:
        tensors, _ = open_shard(shard.path)
        mapped = file_ranges(shard.path)
        for key, base in tensors.items():
            if cancel is not None and cancel.is_set():
                raise MergeCancelled("merge cancelled: nothing was written")
            out_dtype = _output_dtype(base.dtype, dtype)
            yield key, merged_tensor(plan, key, base, out_dtype)
            release_pages(base, mapped)
            done += base.numel() * base.element_size()
            if progress is not None:
                progress(min(done / total, 0.999))
        del tensors


def _write_folder(
    plan: MergePlan,
    output: Path,
    tensors: Iterator[tuple[str, torch.Tensor]],
    dtype: torch.dtype | None,
    max_shard_size: int | None,
) -> int:
    """A Hugging Face folder: the base's config (its dtype updated where cast) and tokenizer
    files beside the merged shards. The folder's writer holds a shard's tensors until it is
    written, so shards are at most half the base's largest unless asked."""
    from modelbrowse.core.saving.hf_folder import write_hf_folder

    config = dict(plan.config) if plan.config is not None else None
    if config is not None and dtype is not None:
        name = str(dtype).removeprefix("torch.")
        config["torch_dtype"] = name
        if "dtype" in config:
            config["dtype"] = name
    report = write_hf_folder(
        output,
        _with_aliases(plan, tensors),
        max_shard_size=max_shard_size or max(plan.largest_shard // 2, 1),
        config=config,
        copy_from=plan.folder,
        verify=False,  # reading each shard back would hold it a second time
    )
    return report.bytes


def _with_aliases(
    plan: MergePlan, tensors: Iterator[tuple[str, torch.Tensor]]
) -> Iterator[tuple[str, torch.Tensor]]:
    """Each tensor, then each key that repeats it (a folder of safetensors shards cannot
    record a tie other than through the config)."""
    repeats: dict[str, list[str]] = {}
    for shard in plan.shards:
        for alias, key in shard.aliases.items():
            repeats.setdefault(key, []).append(alias)
    for key, tensor in tensors:
        yield key, tensor
        for alias in repeats.get(key, []):
            yield alias, tensor


# --- handing pages back --------------------------------------------------------------------

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_MADV_DONTNEED = 4
_PAGE = mmap.PAGESIZE


def file_ranges(path: Path) -> list[tuple[int, int]]:
    """The address ranges where this process maps `path` (none where /proc cannot tell)."""
    real = os.path.realpath(path)
    return [(m.low, m.high) for m in _file_mappings() if m.path == real]


def release_pages(tensor: torch.Tensor, mapped: list[tuple[int, int]]) -> None:
    """Drop the resident pages under a tensor that lies in one of the `mapped` file ranges,
    where whole pages lie inside it: nothing ever writes to them (the maps are private and the
    merge makes new tensors), so they are read again from the file if used. A tensor anywhere
    else (a copy in allocated memory, which MADV_DONTNEED would zero) is left alone."""
    if tensor.device.type != "cpu" or tensor.numel() == 0:
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    if not any(low <= start and end <= high for low, high in mapped):
        return
    first = -(-start // _PAGE) * _PAGE
    last = end // _PAGE * _PAGE
    if last > first:
        _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)
