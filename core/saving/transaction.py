"""A save as one transaction: every file written beside its target, synced and checked, before
any of them replaces anything; then they are renamed into place in order, the folder synced last.

Beside a target NAME while it is saved, hidden, named for it, and gone when the save ends:
- `.NAME.modelbrowse.lock`: held with `flock` by the save to NAME, so saves to it take turns.
- `.NAME.modelbrowse-XXXXXXXX.tmp/`: a private folder (0700) holding what will replace NAME,
  whatever temporary files the writing library makes, and, while a pair of files is renamed, a
  second link to the old NAME. A live save holds a shared `flock` on the folder it saves into;
  the next save that can take it exclusively (no save there is under way) removes what killed
  saves left: folders and files of exactly these names, and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from modelbrowse.core.errors import ModelBrowseError

MARK = "modelbrowse"
TEMP_NAME = re.compile(rf"\..+\.{MARK}-[0-9a-f]{{8}}\.tmp")
LOCK_NAME = re.compile(rf"\..+\.{MARK}\.lock")
# How long a save waits for another save to the same target before it gives up.
LOCK_WAIT_S = 60.0
LOCK_POLL_S = 0.05
# flock is not there on every file system (some network ones): saves then go unserialised.
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.EBADF)


class SaveError(ModelBrowseError):
    """The weights could not be written, or what was written does not read back the same."""


def describe_os_error(path: Path, exc: OSError) -> str:
    """`cannot write x.pt: no space left on device` and the like, in one line."""
    if isinstance(exc, IsADirectoryError) or (path.is_dir() and not path.is_symlink()):
        return f"cannot write {path}: it is a directory"
    if exc.errno == errno.ENOENT and not path.parent.is_dir():
        return f"cannot write {path}: the directory {path.parent} does not exist"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot write {path}: {reason[0].lower()}{reason[1:]}"


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind an exception: itself, one in its chain, or one named in its message.

    torch.save masks a failed write with its own RuntimeError ("unexpected pos ..."), with the
    OSError as its context; safetensors reports "I/O error: ... (os error 28)" in words only.
    """
    seen: set[int] = set()
    chain: BaseException | None = exc
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError):
            return chain
        match = re.search(r"\(os error (\d+)\)", str(chain))
        if match:
            code = int(match.group(1))
            return OSError(code, os.strerror(code))
        chain = chain.__cause__ or chain.__context__
    return None


@contextlib.contextmanager
def as_save_error(path: Path) -> Iterator[None]:
    """An OSError (or a library's error that carries one) as a one-line SaveError about `path`;
    any other exception goes on as it is."""
    try:
        yield
    except SaveError:
        raise
    except Exception as exc:
        os_error = os_error_in(exc)
        if os_error is None:
            raise
        raise SaveError(describe_os_error(path, os_error)) from exc


OLD = ".old"  # the second link to a replaced file, inside its save's folder


@dataclass
class _Staged:
    path: Path
    work: Path  # the save's private folder beside `path`
    before: os.stat_result | None  # the target as it was, if it was there
    done: bool = False

    @property
    def tmp(self) -> Path:
        return self.work / self.path.name


class Transaction:
    """`with Transaction(weights, recipe) as save:` then `save.stage(...)` for each file, in
    order, and `save.commit()`. Leaving without a commit leaves every target as it was.

    The first path names the save: its lock serialises saves to it, and its permission bits
    are the most the others get (a private weights file gets a private recipe).
    """

    def __init__(self, *paths: Path) -> None:
        self.paths = [Path(p) for p in paths]
        self._staged: list[_Staged] = []
        self._locks: list[int] = []
        self._main_mode: int | None = None

    def __enter__(self) -> Transaction:
        for path in self.paths:
            if path.is_dir():
                raise SaveError(f"cannot write {path}: it is a directory")
        self._locks.append(_take_lock(self.paths[0]))
        try:
            for folder in dict.fromkeys(p.parent for p in self.paths):
                remove_leftovers(folder)
                fd = _folder_lock(folder)
                if fd is not None:
                    self._locks.append(fd)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for staged in self._staged:
            if staged.done:
                with contextlib.suppress(OSError):
                    staged.work.rmdir()
            else:
                shutil.rmtree(staged.work, ignore_errors=True)
        self._staged.clear()
        self._release()

    def _release(self) -> None:
        with contextlib.suppress(OSError):  # unlinked while held: see `_take_lock`
            _lock_path(self.paths[0]).unlink()
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()

    def stage(
        self,
        path: Path,
        write: Callable[[Path], None],
        check: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write `path`'s new content to a temporary file (returned), fsync it and check it,
        and give it the target's permission bits and owner; nothing is replaced yet."""
        path = Path(path)
        with as_save_error(path):
            before = _stat(path)
            staged = _Staged(path, _make_work_folder(path), before)
            self._staged.append(staged)
            # Inside a folder no one else may enter; the writer may replace it.
            new_mode = create_empty(staged.tmp)
            write(staged.tmp)
            # The fsync waits on the disk and the check on the CPU: they run side by side.
            with ThreadPoolExecutor(max_workers=1) as pool:
                synced = pool.submit(_fsync_file, staged.tmp)
                try:
                    if check is not None:
                        check(staged.tmp)
                finally:
                    synced.result()
            self._set_mode(staged, new_mode)
        return staged.tmp

    def _set_mode(self, staged: _Staged, new_mode: int) -> None:
        before, tmp = staged.before, staged.tmp
        mode = new_mode if before is None else stat.S_IMODE(before.st_mode)
        if before is not None:
            _keep_owner(tmp, before)
        if self._main_mode is None:
            self._main_mode = mode
        else:
            mode = self._main_mode if before is None else mode & self._main_mode
        os.chmod(tmp, mode)

    def commit(self) -> None:
        """Rename every staged file into place, in order, and sync the folder. A rename that
        fails puts back the files renamed before it."""
        for number, staged in enumerate(self._staged):
            if number < len(self._staged) - 1 and staged.before is not None:
                with contextlib.suppress(OSError):  # no hard links here: no way back either
                    os.link(staged.path, staged.work / OLD, follow_symlinks=False)
            try:
                os.replace(staged.tmp, staged.path)
            except OSError as exc:
                self._roll_back()
                raise SaveError(describe_os_error(staged.path, exc)) from exc
            staged.done = True
        for staged in self._staged:
            with contextlib.suppress(OSError):
                (staged.work / OLD).unlink()
        self._sync_folders()

    def _roll_back(self) -> None:
        """Put back what the renames before a failed one replaced (or remove what they added)."""
        for staged in self._staged:
            if not staged.done:
                continue
            with contextlib.suppress(OSError):
                if staged.before is None:
                    staged.path.unlink()
                else:
                    os.replace(staged.work / OLD, staged.path)
            staged.done = False
        self._sync_folders()

    def _sync_folders(self) -> None:
        for folder in dict.fromkeys(s.path.parent for s in self._staged):
            _fsync_directory(folder)


def write_atomic(
    path: Path, write: Callable[[Path], None], check: Callable[[Path], None] | None = None
) -> None:
    """One file as a transaction: whatever fails (the writer, the check, the disk), `path` is
    left as it was."""
    path = Path(path)
    with Transaction(path) as save:
        save.stage(path, write, check)
        save.commit()


# --- the files beside a target ---------------------------------------------------------------


def create_empty(path: Path) -> int:
    """Create `path` empty, as any new file is (0666 less the umask, by the kernel), and return
    that mode: what the file is given back after a writer that may have replaced it with a
    private temporary file of its own."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return stat.S_IMODE(os.stat(path).st_mode)


def _lock_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{MARK}.lock")


def _make_work_folder(target: Path) -> Path:
    for _ in range(100):
        work = target.with_name(f".{target.name}.{MARK}-{secrets.token_hex(4)}.tmp")
        try:
            os.mkdir(work, 0o700)
        except FileExistsError:
            continue
        return work
    raise FileExistsError(errno.EEXIST, "no free name for a temporary folder")


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _take_lock(target: Path) -> int:
    """The save's lock on `target`, waited for up to LOCK_WAIT_S; its file descriptor.

    The lock file is removed when the save ends, so one taken may already be unlinked (or
    replaced by a newer one): it counts only while its name still points at it.
    """
    path = _lock_path(target)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        with as_save_error(target):
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            if not _flock_waiting(fd, deadline):
                raise SaveError(f"another save to {target} is under way")
            now = _stat(path)
            held = os.fstat(fd)
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _flock_waiting(fd: int, deadline: float) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(LOCK_POLL_S)
        except OSError as exc:
            if exc.errno in NO_LOCKS:
                return True
            raise


def _folder_lock(folder: Path, *, exclusive: bool = False) -> int | None:
    """A flock on the folder itself (shared: a save is under way in it; exclusive, never
    waited for: no save is); its descriptor, or None where it cannot be had."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_leftovers(folder: Path) -> list[str]:
    """Remove what killed saves left in `folder` (this app's temporary folders and lock
    files), when no save is under way there; the names removed."""
    fd = _folder_lock(folder, exclusive=True)
    if fd is None:
        return []
    removed: list[str] = []
    try:
        for entry in os.scandir(folder):
            if TEMP_NAME.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif not (LOCK_NAME.fullmatch(entry.name) and _remove_free_lock(Path(entry.path))):
                continue
            removed.append(entry.name)
    except OSError:
        pass
    finally:
        os.close(fd)
    return removed


def _remove_free_lock(path: Path) -> bool:
    """Remove a lock file that no save holds (the one holding it checks its name after)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or opened.st_size != 0:
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
            return False
        path.unlink()
        return True
    except OSError:  # held by a live save, or gone
        return False
    finally:
        os.close(fd)


def _keep_owner(path: Path, before: os.stat_result) -> None:
    """The replaced file's owner and group, as far as this process may set them."""
    now = os.stat(path)
    if (now.st_uid, now.st_gid) == (before.st_uid, before.st_gid):
        return
    try:
        os.chown(path, before.st_uid, before.st_gid)
    except PermissionError:
        with contextlib.suppress(PermissionError):  # a group of the user's own
            os.chown(path, -1, before.st_gid)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system allows it
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
