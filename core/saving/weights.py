"""Writing a state_dict to disk: atomically, in `.pt` or `.safetensors`, read back and verified."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbrowse.core.bitwise import bitwise_equal
from modelbrowse.core.nodes import quantization_of
from modelbrowse.core.saving.hashing import HashingWriter, MemoryRanges, Progress, file_sha256
from modelbrowse.core.saving.names import FORMATS, extensions_text
from modelbrowse.core.saving.transaction import SaveError as SaveError
from modelbrowse.core.saving.transaction import Transaction
from modelbrowse.core.tensor_bytes import (
    TensorBytesError,
    check_files_hold,
    refuse_expanded,
)

ALIASES_KEY = "modelbrowse.aliases"


@dataclass(frozen=True)
class SaveReport:
    path: Path
    format: str
    tensors: int
    params: int
    nbytes: int
    seconds: float
    sha256: str

    def summary(self) -> str:
        from modelbrowse.core.units import human_bytes, human_count

        return (
            f"wrote {self.path} ({self.tensors} tensors, {human_count(self.params)} params, "
            f"{human_bytes(self.nbytes)}, {self.seconds:.1f} s)"
        )


def format_for(path: str | os.PathLike[str]) -> str:
    """`pt` or `safetensors`, from the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SaveError(
            f"{Path(path).name}: unknown extension '{suffix or '(none)'}'; use {extensions_text()}"
        )
    return FORMATS[suffix]


# --- shared storage, for safetensors ---------------------------------------------------------


def _storage_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    return (
        tensor.device,
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def split_aliases(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Each tensor once (the first key names it), and {alias: key} for the keys that repeat it.

    Tensors that overlap another one without being the same view are copied, since safetensors
    refuses shared storage; this is the only copy saving makes, and it is of that tensor alone.
    """
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first_of: dict[tuple[Any, ...], str] = {}
    storages: set[tuple[Any, int]] = set()
    for key, tensor in state.items():
        tensor = tensor.detach()
        ident = _storage_key(tensor)
        if ident in first_of and tensor.numel() > 0:  # every empty tensor sits at address 0
            aliases[key] = first_of[ident]
            continue
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        if storage in storages or not tensor.is_contiguous() or _is_partial_view(tensor):
            tensor = tensor.contiguous().clone()
        else:
            storages.add(storage)
        first_of[ident] = key
        unique[key] = tensor
    return unique, aliases


def _is_partial_view(tensor: torch.Tensor) -> bool:
    """A view onto part of a larger storage: safetensors would refuse or mis-save it."""
    if tensor.numel() == 0:
        return False
    return bool(
        tensor.storage_offset() != 0
        or tensor.untyped_storage().nbytes() != tensor.numel() * tensor.element_size()
    )


# --- writing ---------------------------------------------------------------------------------


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict, refusing tensors that have no data yet."""
    state = model.state_dict()
    for key, tensor in state.items():
        if tensor.is_meta:
            raise SaveError(f"{key} has no values yet (it is on the meta device)")
        quantization = quantization_of(tensor)
        if quantization is not None:
            raise SaveError(
                f"{key} is a {quantization.scheme} weight: writing it would need it "
                "dequantized or re-quantized, which this app does not do"
            )
    return state


def save_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    verify: bool = True,
    progress: Progress | None = None,
) -> SaveReport:
    """Write `model.state_dict()` to `path` atomically; the extension picks the format."""
    path = Path(path).expanduser()
    format_for(path)
    start = time.perf_counter()
    with Transaction(path) as save:
        report = stage_weights(save, model, path, verify=verify, progress=progress)
        save.commit()
    return dataclasses.replace(report, seconds=time.perf_counter() - start)


def cast_state(
    state: dict[str, torch.Tensor], dtypes: Mapping[str, torch.dtype]
) -> dict[str, torch.Tensor]:
    """`state` with the keys in `dtypes` cast to theirs; a tensor stored under several keys
    is cast once, so that the copies stay one tensor in the file."""
    done: dict[tuple[Any, ...], torch.Tensor] = {}
    cast: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        target = dtypes.get(key)
        if target is None or tensor.dtype == target:
            cast[key] = tensor
            continue
        ident = (*_storage_key(tensor), target)
        if ident not in done:
            done[ident] = tensor.detach().to(target)
        cast[key] = done[ident]
    return cast


def stage_weights(
    save: Transaction,
    model: nn.Module,
    path: Path,
    *,
    verify: bool = True,
    progress: Progress | None = None,
    dtypes: Mapping[str, torch.dtype] | None = None,
) -> SaveReport:
    """Write, sync, hash and verify the weights as the first file of `save`; nothing replaced.
    `dtypes`: keys written in another dtype than the model's (a write's `--dtype`)."""
    fmt = format_for(path)
    start = time.perf_counter()
    state = state_of(model)
    check_files_hold(state)  # a mapped file truncated under the model: an error, not SIGBUS
    if dtypes:
        state = cast_state(state, dtypes)
    if fmt == "safetensors":
        refuse_expanded(state, path.name)
    total = sum(t.numel() * t.element_size() for t in state.values())
    sha: list[str] = []
    writers: list[HashingWriter] = []

    def write(tmp: Path) -> None:
        if fmt == "pt":
            with open(tmp, "wb") as handle:
                writer = HashingWriter(handle, total, progress, MemoryRanges(state.values()))
                try:
                    torch.save(state, writer)  # type: ignore[arg-type]
                    handle.flush()
                except BaseException:
                    writer.close()
                    raise
            # The hash may still be catching up: it is read once fsync has started, in `check`.
            writers.append(writer)
        else:
            from safetensors.torch import save_file

            unique, aliases = split_aliases(state)
            metadata = {"format": "pt"}
            if aliases:  # only then: safetensors orders header metadata at random
                metadata[ALIASES_KEY] = json.dumps(aliases, sort_keys=True)
            save_file(unique, str(tmp), metadata=metadata)
            if progress is not None:
                progress(1.0)

    def check(tmp: Path) -> None:
        # A safetensors file is written by the library itself: it is hashed (for the recipe)
        # beside the comparison; hashlib and torch both leave the GIL, so the two share the
        # cores while fsync waits on the disk. A `.pt` file was hashed as it was written
        # (torch.save only appends), and that hash finishes beside the comparison too.
        with ThreadPoolExecutor(max_workers=1) as pool:
            hashed = None if writers else pool.submit(file_sha256, tmp)
            try:
                if verify:
                    verify_file(tmp, state, fmt, shown_as=path)
            finally:
                for writer in writers:
                    sha.append(writer.hexdigest())
            if hashed is not None:
                sha.append(hashed.result())

    tmp = save.stage(path, write, check)
    return SaveReport(
        path=path,
        format=fmt,
        tensors=len(state),
        params=sum(p.numel() for p in model.parameters()),
        nbytes=tmp.stat().st_size,
        seconds=time.perf_counter() - start,
        sha256=sha[0],
    )


# --- reading back ----------------------------------------------------------------------------


def read_weights(path: str | os.PathLike[str], fmt: str | None = None) -> dict[str, torch.Tensor]:
    """A state_dict from `.pt` or `.safetensors`, ties restored, read by the reading layer
    (nothing in the file runs) and mapped, not copied.

    `fmt` names the format of a file whose name does not carry it (a temporary file).
    """
    from modelbrowse.core.reading import ReadError
    from modelbrowse.core.reading.records import TensorRecord
    from modelbrowse.core.sources.tensor_mapping import FileMaps, tensors_of

    path = Path(path)
    fmt = fmt or format_for(path)
    try:
        if fmt == "pt":
            from modelbrowse.core.reading.file_kinds import FileKind, sniff
            from modelbrowse.core.reading.torch_files import read_torch_legacy, read_torch_zip

            kind = sniff(path)
            if kind not in (FileKind.TORCH_ZIP, FileKind.TORCH_LEGACY):
                raise ReadError(f"it is {kind.value}, not a torch.save file")
            reader = read_torch_legacy if kind is FileKind.TORCH_LEGACY else read_torch_zip
            loaded = reader(path).value
            if not isinstance(loaded, dict) or not all(
                isinstance(v, TensorRecord) for v in loaded.values()
            ):
                raise SaveError(f"{path} does not hold a state_dict")
            return tensors_of(loaded)
        from modelbrowse.core.reading.safetensors_header import read_header

        header = read_header(path)
        state = tensors_of(header.tensors, maps=FileMaps())
        for alias, key in header.aliases.items():
            state[alias] = state[key]
        return state
    except ReadError as exc:
        message = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path} ")
        raise SaveError(f"cannot read {path}: {message}") from None


def compare(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> Iterator[str]:
    """Every difference between two state_dicts: keys, shapes, dtypes, bytes."""
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    if missing:
        yield f"missing {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}"
    if extra:
        yield f"unexpected {', '.join(extra[:3])}{' …' if len(extra) > 3 else ''}"
    for key, tensor in expected.items():
        other = found.get(key)
        if other is None:
            continue
        if tuple(other.shape) != tuple(tensor.shape):
            yield f"{key}: shape {tuple(other.shape)}, expected {tuple(tensor.shape)}"
        elif other.dtype != tensor.dtype:
            yield f"{key}: dtype {other.dtype}, expected {tensor.dtype}"
        else:
            try:
                equal = bitwise_equal(other, tensor)
            except TensorBytesError as exc:
                yield f"{key}: {exc}"
                continue
            if not equal:
                yield f"{key}: the values differ"


def verify_file(
    path: Path, state: dict[str, torch.Tensor], fmt: str, shown_as: Path | None = None
) -> None:
    """Read the file back and compare it with `state`; raise on the first difference."""
    problems = list(compare(state, read_weights(path, fmt)))
    if problems:
        raise SaveError(f"{shown_as or path} did not read back the same: {problems[0]}")
