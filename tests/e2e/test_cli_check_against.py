"""`--check --against REF`: parameters a recipe froze that changed since REF; and the exit
status 2 for a source that cannot be read, as for a usage error."""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from modelbrowse.core import health
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.recipe import save_edited
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.tui.cli import main
from tests.reading.hostile_files import code_running_pt

TIES_NOTE = "note: ties not checked: no architecture (--arch SOURCE names one)\n"


@pytest.fixture
def tuned(tmp_path: Path) -> tuple[Path, Path]:
    """`base.pt` and `tuned.pt`: the recipe beside tuned.pt froze `a`, and yet `a.weight`
    moved by 0.5 in one place; `b.weight`, trainable, moved everywhere."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(a=nn.Linear(4, 4), b=nn.Linear(4, 2)))
    base = tmp_path / "base.pt"
    torch.save(model.state_dict(), base)
    source = resolve_source(str(base))
    edited = source.build_real(None)
    freeze = SetTrainable("a", False)
    freeze.apply(edited)
    with torch.no_grad():
        edited.get_parameter("a.weight")[1, 2] += 0.5
        edited.get_parameter("b.weight").add_(0.25)
    path = tmp_path / "tuned.pt"
    save_edited(edited, path, source, None, [freeze])
    return base, path


def test_a_frozen_parameter_that_changed_is_found(
    tuned: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, path = tuned
    assert main([str(path), "--check", "--against", str(base)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"frozen_changed a.weight: meant to be frozen (per the recipe) but changed from {base}: "
        "largest difference 0.5",
        "1 problem found in 4 tensors",
    ]
    assert captured.err == TIES_NOTE
    # Against itself, nothing frozen changed.
    assert main([str(path), "--check", "--against", str(path)]) == 0
    assert capsys.readouterr().out == "no problems found in 4 tensors\n"


def test_the_recipe_named_with_recipe_and_the_json(
    tuned: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, path = tuned
    recipe = tmp_path / "elsewhere.json"
    shutil.move(f"{path}.recipe.json", recipe)
    argv = [str(path), "--check", "--against", str(base), "--recipe", str(recipe), "--json"]
    assert main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["findings"] == [
        {
            "kind": "frozen_changed",
            "key": "a.weight",
            "numbers": {"against": str(base), "max_abs_diff": 0.5},
        }
    ]


def test_a_frozen_key_the_reference_lacks_is_a_note(
    tuned: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = tuned
    other = tmp_path / "other.pt"
    torch.save({"a.weight": torch.zeros(2, 2)}, other)
    assert main([str(path), "--check", "--against", str(other)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"frozen_changed a.weight: meant to be frozen (per the recipe) but changed from {other}: "
        "shape (2, 2) -> (4, 4)",
        "1 problem found in 4 tensors",
    ]
    assert captured.err == (
        TIES_NOTE + f"note: frozen in the recipe but not in both {other} and the source: a.bias\n"
    )


def test_without_a_recipe_against_is_a_usage_error(
    tuned: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, path = tuned
    assert main([str(base), "--check", "--against", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"modelbrowse: error: --against compares what a recipe froze, and there is no recipe "
        f"at {base}.recipe.json (--recipe R names one)\n"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--against", "vgg11"], "--against goes with --check"),
        (
            ["--check", "--recipe", "r.json"],
            "with --check, --recipe says what --against compares; add --against REF",
        ),
    ],
)
def test_flags_that_need_each_other(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["alexnet", *flags])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"modelbrowse: error: {message}"


# --- a source that cannot be read: 2, as a usage error, never 1 ("found") ------------------


def test_a_truncated_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cut.pt"
    torch.save({"w": torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:-300])
    assert main([str(path), "--check"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"modelbrowse: error: {path} is a truncated or damaged zip archive (a file cut short?)\n"
    )


def test_a_hostile_file_exits_2_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    path = code_running_pt(tmp_path / "hostile.pt", marker)
    assert main([str(path), "--check"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"modelbrowse: error: {path}")
    assert not marker.exists()


def test_an_error_while_reading_exits_2_not_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fine.pt"
    torch.save({"w": torch.randn(8)}, path)

    def failing_disk(tensor: torch.Tensor, sample: bool = False) -> health.Scan:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(health, "scan_tensor", failing_disk)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert main([str(path), "--check"]) == 2
    captured = capsys.readouterr()
    log = tmp_path / "modelbrowse" / "log" / "modelbrowse.log"
    assert captured.out == ""
    assert captured.err == (
        "modelbrowse: error: unexpected error: OSError: [Errno 5] Input/output error "
        f"(traceback in {log})\n"
    )
