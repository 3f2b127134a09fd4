"""A PEFT adapter folder written as one step: `adapter_config.json`, `adapter_model.safetensors`
and the recipe, built in a private folder beside the target and renamed into place.

An existing folder of that name is replaced only once the new one is complete and synced; a
failure at any point leaves it as it was (the same hidden names as `transaction.py`, so a
killed save's leftovers are cleared by the next save there).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from modelbrowse.core.saving.transaction import (
    SaveError,
    _fsync_directory,
    _fsync_file,
    _lock_path,
    _make_work_folder,
    _take_lock,
    as_save_error,
    create_empty,
    remove_leftovers,
)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

Writer = Callable[[Path], None]


def folder_problem(target: Path) -> str | None:
    """Why `target` cannot become an adapter folder, or None."""
    if target.exists() and not target.is_dir():
        return f"{target} is a file: an adapter is written as a folder"
    if target.is_dir() and any(target.iterdir()) and not (target / ADAPTER_CONFIG).is_file():
        return f"{target} is a folder that is not a PEFT adapter: choose a new name"
    if not target.parent.is_dir():
        return f"the directory {target.parent} does not exist"
    if not os.access(target.parent, os.W_OK):
        return f"the directory {target.parent} is not writable"
    return None


def write_folder(target: Path, files: dict[str, Writer], check: Writer | None = None) -> None:
    """Write each file of `files` (name -> writer of that path) into a new folder, sync it,
    `check` it, then rename it to `target` (the old one, if any, removed after)."""
    target = Path(target)
    problem = folder_problem(target)
    if problem:
        raise SaveError(problem)
    lock = _take_lock(target)
    try:
        remove_leftovers(target.parent)
        with as_save_error(target):
            work = _make_work_folder(target)
        try:
            _fill(target, work, files, check)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        with contextlib.suppress(OSError):
            _lock_path(target).unlink()
        os.close(lock)


def _fill(target: Path, work: Path, files: dict[str, Writer], check: Writer | None) -> None:
    new = work / target.name
    with as_save_error(target):
        new.mkdir()
        for name, write in files.items():
            mode = create_empty(new / name)
            write(new / name)
            os.chmod(new / name, mode)
            _fsync_file(new / name)
        _fsync_directory(new)
    if check is not None:
        check(new)
    old = work / "old"
    with as_save_error(target):
        if target.is_dir():
            os.replace(target, old)
        try:
            os.replace(new, target)
        except OSError:
            if old.is_dir():
                os.replace(old, target)
            raise
        _fsync_directory(target.parent)
