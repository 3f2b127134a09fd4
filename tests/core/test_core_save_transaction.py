"""A save is one transaction: the weights and the recipe replace the old pair together or not at
all, keep the old files' modes and owner, take turns, and clean up after killed saves."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import modelbrowse.core.saving.transaction as transaction
from modelbrowse.core.recipe import read_recipe, save_edited
from modelbrowse.core.saving.weights import SaveError, save_weights
from modelbrowse.core.sources.base import Source, resolve_source
from tests.saving_support import FORMATS, files_in, one_line, sha256, write_tied_net


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Source:
    models = tmp_path / "models"
    models.mkdir()
    write_tied_net(models)
    monkeypatch.chdir(models)
    return resolve_source("tied_models.py:TiedNet")


def model_of(source: Source, seed: int) -> nn.Module:
    return source.build_real(seed)


def save(source: Source, path: Path, seed: int, **kwargs: Any) -> None:
    save_edited(model_of(source, seed), path, source, seed, [], **kwargs)


def recipe_of(path: Path) -> Path:
    return path.with_name(path.name + ".recipe.json")


def assert_a_pair(path: Path) -> dict[str, Any]:
    """The recipe beside `path` describes the weights in it: one save wrote both."""
    recipe = read_recipe(recipe_of(path))
    assert recipe["weights"]["sha256"] == sha256(path)
    return recipe


@pytest.fixture(params=FORMATS)
def saved(request: pytest.FixtureRequest, tmp_path: Path, source: Source) -> Iterator[Path]:
    """A pair saved before, which every failed save must leave byte for byte (and nothing
    else beside it)."""
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / f"w.{request.param}"
    save(source, path, seed=1)
    before = (path.read_bytes(), recipe_of(path).read_bytes())
    yield path
    assert (path.read_bytes(), recipe_of(path).read_bytes()) == before, "the old pair changed"
    assert files_in(folder) == sorted([path.name, recipe_of(path).name]), "something was left"


def fail(source: Source, path: Path) -> str:
    with pytest.raises(SaveError) as excinfo:
        save(source, path, seed=2)
    return one_line(excinfo)


# --- a failure anywhere leaves both old files -------------------------------------------------


def test_a_directory_where_the_recipe_goes(tmp_path: Path, source: Source) -> None:
    path = tmp_path / "w.pt"
    save(source, path, seed=1)
    before = path.read_bytes()
    recipe_of(path).unlink()
    recipe_of(path).mkdir()
    (recipe_of(path) / "inside").write_text("kept")
    assert fail(source, path) == f"cannot write {recipe_of(path)}: it is a directory"
    assert path.read_bytes() == before
    assert (recipe_of(path) / "inside").read_text() == "kept"
    assert sorted(files_in(tmp_path)) == sorted(["models", "w.pt", "w.pt.recipe.json"])


def test_the_disk_fills_up_while_writing_the_recipe(
    saved: Path, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    assert fail(source, saved) == f"cannot write {recipe_of(saved)}: no space left on device"


def test_an_error_while_making_the_recipe(
    saved: Path, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(recipe: Any) -> str:
        raise TypeError("Object of type Tensor is not JSON serializable")

    monkeypatch.setattr("modelbrowse.core.recipe.recipe_text", broken)
    with pytest.raises(TypeError):
        save(source, saved, seed=2)


def test_the_weights_do_not_read_back_the_same(
    saved: Path, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "modelbrowse.core.saving.weights.compare", lambda *a: iter(["x: values differ"])
    )
    assert fail(source, saved) == f"{saved} did not read back the same: x: values differ"


def test_the_recipe_cannot_be_renamed_into_place(
    saved: Path, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weights were renamed already: they are put back."""
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith(".recipe.json"):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    assert fail(source, saved) == f"cannot write {recipe_of(saved)}: input/output error"


def test_a_new_pair_that_cannot_be_completed_leaves_nothing(
    tmp_path: Path, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith(".recipe.json"):
            raise PermissionError(errno.EACCES, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "new.safetensors"
    assert fail(source, path) == f"cannot write {recipe_of(path)}: permission denied"
    assert files_in(tmp_path) == ["models"]


# --- permissions ----------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_private_file_stays_private_and_so_does_its_recipe(
    tmp_path: Path, source: Source, fmt: str
) -> None:
    path = tmp_path / f"w.{fmt}"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    save(source, path, seed=1)
    assert (mode(path), mode(recipe_of(path))) == (0o600, 0o600)

    # A recipe already there that others could read is made as private as the weights.
    os.chmod(recipe_of(path), 0o644)
    save(source, path, seed=2)
    assert (mode(path), mode(recipe_of(path))) == (0o600, 0o600)
    assert_a_pair(path)


def test_other_modes_are_kept_and_new_files_follow_the_umask(
    tmp_path: Path, source: Source
) -> None:
    path = tmp_path / "w.pt"
    old_mask = os.umask(0o027)
    try:
        save(source, path, seed=1)
        assert (mode(path), mode(recipe_of(path))) == (0o640, 0o640)
        os.chmod(path, 0o664)
        os.chmod(recipe_of(path), 0o604)
        save(source, path, seed=2)
    finally:
        os.umask(old_mask)
    assert (mode(path), mode(recipe_of(path))) == (0o664, 0o604)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_the_owner_is_kept_where_it_may_be_set(tmp_path: Path, source: Source) -> None:
    path = tmp_path / "w.safetensors"
    save(source, path, seed=1)
    os.chown(path, 4321, 8765)
    save(source, path, seed=2)
    assert (path.stat().st_uid, path.stat().st_gid) == (4321, 8765)


# --- saves to one target take turns ---------------------------------------------------------


class Paused:
    """A save held half way through writing its weights, in a thread, until `go()`."""

    def __init__(self, source: Source, path: Path, seed: int) -> None:
        self.writing = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None

        def hold(fraction: float) -> None:
            self.writing.set()
            assert self.release.wait(60), "never released"

        def run() -> None:
            try:
                save(source, path, seed, progress=hold)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()
        assert self.writing.wait(60), "the save never started writing"

    def go(self) -> None:
        self.release.set()
        self.thread.join(60)
        assert not self.thread.is_alive() and self.error is None, self.error


def test_a_second_save_to_the_same_file_waits_and_then_says_so(
    tmp_path: Path, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.pt"
    first = Paused(source, path, seed=1)
    try:
        monkeypatch.setattr(transaction, "LOCK_WAIT_S", 0.3)
        assert fail(source, path) == f"another save to {path} is under way"
    finally:
        first.go()
    assert assert_a_pair(path)["source"]["init_seed"] == 1
    save(source, path, seed=2)  # the turn is free again
    assert assert_a_pair(path)["source"]["init_seed"] == 2
    assert sorted(files_in(tmp_path)) == sorted(["models", "w.pt", "w.pt.recipe.json"])


def test_a_second_save_waits_its_turn(
    tmp_path: Path, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second save starts while the first is writing; it writes after it, as a pair."""
    path = tmp_path / "w.safetensors"
    waiting = threading.Event()
    real_sleep = time.sleep

    class Clock:
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            waiting.set()
            real_sleep(seconds)

    monkeypatch.setattr(transaction, "time", Clock)
    first = Paused(source, path, seed=1)
    errors: list[BaseException] = []

    def second() -> None:
        try:
            save(source, path, seed=2)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=second)
    try:
        thread.start()
        assert waiting.wait(60), "the second save did not wait for the first"
    finally:
        first.go()
        thread.join(60)
    assert errors == []
    assert assert_a_pair(path)["source"]["init_seed"] == 2
    assert sorted(files_in(tmp_path)) == sorted(["models", path.name, recipe_of(path).name])


SAVER = textwrap.dedent(
    """
    import sys
    from modelbrowse.core.recipe import save_edited
    from modelbrowse.core.sources.base import resolve_source

    source = resolve_source("tied_models.py:TiedNet")
    seed = int(sys.argv[2])
    for _ in range(5):
        save_edited(source.build_real(seed), sys.argv[1], source, seed, [])
    """
)


def test_processes_saving_the_same_file_leave_a_pair(tmp_path: Path, source: Source) -> None:
    path = tmp_path / "w.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path), str(seed)],
            cwd=Path.cwd(),
            env=env,
            stderr=subprocess.PIPE,
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert assert_a_pair(path)["source"]["init_seed"] in (1, 2)
    assert sorted(files_in(tmp_path)) == sorted(["models", path.name, recipe_of(path).name])


# --- what killed saves leave ----------------------------------------------------------------

STALE = ".w.pt.modelbrowse-0123abcd.tmp"
KEPT = [  # near misses: not this app's, or not what it leaves; never touched
    ".w.pt.0123abcd.tmp",
    "w.pt.modelbrowse-0123abcd.tmp",
    ".w.pt.modelbrowse-0123abcd.tmp.keep",
    ".w.pt.modelbrowse-0123ABCD.tmp",
    ".x.pt.modelbrowse-89abcdef.tmp",  # a file, not a save's folder
    ".y.pt.modelbrowse.lock",  # not empty: not a lock file
]


def test_the_next_save_removes_what_a_killed_save_left(tmp_path: Path, source: Source) -> None:
    folder = tmp_path / "out"
    (folder / STALE).mkdir(parents=True)
    (folder / STALE / "w.pt").write_bytes(b"\0" * 100_000)  # half written
    (folder / STALE / ".tmpAbc123").write_bytes(b"\0" * 100)  # the library's own temporary
    (folder / ".v.pt.modelbrowse.lock").touch()  # another target's, no save holds it
    for name in KEPT:
        (folder / name).write_text(name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("kept")
    (folder / ".z.pt.modelbrowse-fedcba98.tmp").symlink_to(elsewhere)

    save(source, folder / "other.safetensors", seed=1)
    assert files_in(folder) == sorted(
        [
            *KEPT,
            ".z.pt.modelbrowse-fedcba98.tmp",
            "other.safetensors",
            "other.safetensors.recipe.json",
        ]
    )
    assert all((folder / name).read_text() == name for name in KEPT)
    assert (elsewhere / "precious").read_text() == "kept"


def test_a_live_save_is_left_alone(tmp_path: Path, source: Source) -> None:
    live = tmp_path / "live.pt"
    first = Paused(source, live, seed=1)
    try:
        working = [n for n in files_in(tmp_path) if n.startswith(".live.pt.")]
        assert len(working) == 2 and working[1] == ".live.pt.modelbrowse.lock", working
        partial = next(tmp_path.glob(".live.pt.modelbrowse-*.tmp/live.pt"))
        save(source, tmp_path / "other.pt", seed=2)
        assert partial.exists()
        assert sorted(n for n in files_in(tmp_path) if n.startswith(".live.pt.")) == working
    finally:
        first.go()
    assert_a_pair(live)
    assert_a_pair(tmp_path / "other.pt")
    assert [n for n in files_in(tmp_path) if n.startswith(".")] == []


def test_saving_weights_alone_is_a_transaction_too(tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    save_weights(nn.Linear(2, 2), path)
    assert mode(path) == 0o600
    assert torch.load(path, weights_only=True)["weight"].shape == (2, 2)
    assert files_in(tmp_path) == ["w.pt"]
