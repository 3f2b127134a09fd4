"""Atomic writes: whatever fails, the file already there is left byte for byte, no temp files."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import modelbrowse.core.saving.weights as saving
from modelbrowse.core.saving.weights import SaveError, read_weights, save_weights
from tests.edit_support import small_net, state
from tests.saving_support import FORMATS, assert_same_tensors, files_in, one_line, sha256

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(params=FORMATS)
def existing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """A file saved before, which every failed save must leave as it is (and nothing else)."""
    path = tmp_path / f"weights.{request.param}"
    save_weights(small_net(), path)
    before = path.read_bytes()
    yield path
    assert path.read_bytes() == before, "the file already there was changed"
    assert files_in(tmp_path) == [path.name], "a temporary file was left behind"


def changed_model() -> nn.Module:
    model = small_net()
    with torch.no_grad():
        model.get_parameter("6.weight").mul_(-2.0)
    return model


def fail_save(path: Path) -> str:
    """Save a different model over `path`; the one-line SaveError message naming the path."""
    with pytest.raises(SaveError) as excinfo:
        save_weights(changed_model(), path)
    message = one_line(excinfo)
    assert str(path) in message
    return message


# --- where the file cannot go ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_directory_that_does_not_exist(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "no" / "such" / f"w.{fmt}"
    message = fail_save(path)
    assert message == f"cannot write {path}: the directory {path.parent} does not exist"
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_names_with_spaces_and_unicode(tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "my runs" / "résumé 模型"
    folder.mkdir(parents=True)
    path = folder / f"poids édités ü {fmt}.{fmt}"
    report = save_weights(small_net(), path)
    assert report.sha256 == sha256(path)
    assert files_in(folder) == [path.name]
    assert_same_tensors(read_weights(path), state(small_net()))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_path_that_is_a_directory(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"w.{fmt}"
    path.mkdir()
    (path / "inside").write_text("kept")
    assert fail_save(path) == f"cannot write {path}: it is a directory"
    assert files_in(tmp_path) == [path.name]
    assert (path / "inside").read_text() == "kept"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only dirs"
)
def test_a_read_only_directory(existing: Path) -> None:
    os.chmod(existing.parent, 0o555)
    try:
        message = fail_save(existing)
    finally:
        os.chmod(existing.parent, 0o755)
    assert message == f"cannot write {existing}: permission denied"


def test_a_read_only_directory_simulated(existing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, chmod does not stop writes: the temporary file cannot be created."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(existing.parent))

    monkeypatch.setattr(os, "mkdir", refuse)
    assert fail_save(existing) == f"cannot write {existing}: permission denied"


@pytest.mark.parametrize(
    "error",
    [PermissionError(errno.EACCES, "Permission denied"), ENOSPC, OSError(errno.EXDEV, "x")],
    ids=["permission", "disk-full", "cross-device"],
)
def test_the_final_rename_fails(
    existing: Path, monkeypatch: pytest.MonkeyPatch, error: OSError
) -> None:
    def replace(src: Any, dst: Any) -> None:
        raise error

    monkeypatch.setattr(os, "replace", replace)
    expected: dict[int | None, str] = {
        errno.EACCES: "permission denied",
        errno.ENOSPC: "no space left on device",
    }
    assert fail_save(existing) == f"cannot write {existing}: {expected.get(error.errno, 'x')}"


# --- the disk fills up -----------------------------------------------------------------------


class FillingFile:
    """A file on a disk with `room` bytes left: writes past that fail with ENOSPC, as
    the OS does, after writing what fits."""

    def __init__(self, handle: Any, room: int) -> None:
        self.handle = handle
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.handle.write(bytes(memoryview(data)[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return int(self.handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> FillingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


@pytest.mark.parametrize("room", [0, 700, 11_000], ids=["at-once", "header", "half-way"])
def test_the_disk_fills_up_while_writing_pt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int
) -> None:
    path = tmp_path / "weights.pt"
    save_weights(small_net(), path)
    before = path.read_bytes()

    def filling_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = open(file, mode, *args, **kwargs)  # noqa: SIM115
        return FillingFile(handle, room) if "w" in mode else handle

    monkeypatch.setattr(saving, "open", filling_open, raising=False)
    assert fail_save(path) == f"cannot write {path}: no space left on device"
    assert path.read_bytes() == before
    assert files_in(tmp_path) == [path.name]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE, SIGXFSZ")
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_file_size_limit_is_hit_while_writing(tmp_path: Path, fmt: str) -> None:
    """A real failed write(2) (EFBIG) half way through, in both writers."""
    import resource

    path = tmp_path / f"weights.{fmt}"
    save_weights(small_net(), path)
    before = path.read_bytes()
    big = nn.Linear(256, 256)  # 257 KiB
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(SaveError) as excinfo:
            save_weights(big, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert one_line(excinfo) == f"cannot write {path}: file too large"
    assert path.read_bytes() == before
    assert files_in(tmp_path) == [path.name]


def test_the_disk_fills_up_at_fsync(existing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise ENOSPC

    monkeypatch.setattr(os, "fsync", fsync)
    assert fail_save(existing) == f"cannot write {existing}: no space left on device"


def test_any_other_failure_leaves_the_file(existing: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not an OSError: it is not dressed up as one, but the file and directory are as they were."""

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug in a writer")

    monkeypatch.setattr(torch, "save", broken)
    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(RuntimeError, match="a bug in a writer"):
        save_weights(changed_model(), existing)


# --- verification ----------------------------------------------------------------------------


def test_a_file_that_reads_back_different_is_not_kept(
    existing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read = saving.read_weights

    def read_one_bit_off(path: Any, fmt: str | None = None) -> dict[str, torch.Tensor]:
        found = dict(real_read(path, fmt))
        flipped = found["6.bias"].clone()
        flipped.view(torch.int32)[0] ^= 1  # the lowest bit of one float
        found["6.bias"] = flipped
        return found

    monkeypatch.setattr(saving, "read_weights", read_one_bit_off)
    message = fail_save(existing)
    assert message == f"{existing} did not read back the same: 6.bias: the values differ"


@pytest.mark.parametrize(
    "problem",
    ["4.weight: shape (16,), expected (16, 256)", "missing 0.weight", "2.x: the values differ"],
)
def test_every_difference_is_reported_as_not_the_same(
    existing: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    def differs(expected: Any, found: Any) -> Iterator[str]:
        yield problem
        yield "a second problem is not shown"

    monkeypatch.setattr(saving, "compare", differs)
    assert fail_save(existing) == f"{existing} did not read back the same: {problem}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_verification_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    monkeypatch.setattr(saving, "compare", lambda expected, found: iter(["x: the values differ"]))
    path = tmp_path / f"new.{fmt}"
    assert "did not read back the same" in fail_save(path)
    assert files_in(tmp_path) == []


def test_verify_false_skips_reading_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(saving, "compare", lambda expected, found: iter(["never asked"]))
    model = small_net()
    report = save_weights(model, tmp_path / "w.pt", verify=False)
    assert report.sha256 == sha256(tmp_path / "w.pt")
    assert_same_tensors(read_weights(tmp_path / "w.pt"), state(model))


# --- killed half way -------------------------------------------------------------------------

SLOW_SAVE = textwrap.dedent(
    """
    import sys, time
    import torch
    from torch import nn
    from modelbrowse.core.saving.weights import save_weights

    model = nn.Module()
    mib = int(sys.argv[2])  # in tensors of 1 MiB to 64 MiB, a few hundred writes or more
    size = min(mib, 64)
    for i in range(mib // size):
        model.register_buffer(f"b{i}", torch.full((size << 18,), float(i)))
    save_weights(model, sys.argv[1], progress=lambda fraction: time.sleep(0.02))
    """
)


def wait_for(condition: Callable[[], bool], seconds: float, what: str, proc: Any) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the saving process ended before {what}: {proc.stderr.read()!r}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {seconds} s")
        time.sleep(0.01)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mib", [64, 2048], ids=["64MiB", "2GiB"])
def test_a_save_killed_half_way_leaves_the_file(tmp_path: Path, fmt: str, mib: int) -> None:
    path = tmp_path / f"weights.{fmt}"
    save_weights(small_net(), path)
    before = sha256(path)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, str(path), str(mib)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        half = mib << 19  # half the state's bytes: killed in the middle of writing

        def temp_has_grown() -> bool:
            temps = list(tmp_path.glob(f".{path.name}.modelbrowse-*.tmp/*"))
            return any(t.exists() and t.stat().st_size > half for t in temps)

        wait_for(temp_has_grown, 120, f"temporary file of {mib // 2} MiB", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL  # killed in the middle, not finished

    assert sha256(path) == before
    assert_same_tensors(read_weights(path), state(small_net()))
    # SIGKILL runs no clean-up: the half-written file is left in a hidden folder named for the
    # file it was meant to replace (and the save's lock file); it never stands in its place.
    leftovers = [name for name in files_in(tmp_path) if name != path.name]
    lock, temps = f".{path.name}.modelbrowse.lock", [n for n in leftovers if n.endswith(".tmp")]
    assert sorted(leftovers) == sorted([lock, *temps]) and len(temps) == 1, leftovers
    assert temps[0].startswith(f".{path.name}.modelbrowse-") and (tmp_path / temps[0]).is_dir()

    # The next save into the folder removes them, and is not disturbed by them.
    report = save_weights(changed_model(), path)
    assert report.sha256 == sha256(path)
    assert_same_tensors(read_weights(path), state(changed_model()))
    assert files_in(tmp_path) == [path.name]
