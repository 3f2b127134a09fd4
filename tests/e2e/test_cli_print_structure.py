"""`--print` of a weight file from its bytes alone: the full open's text, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modelbrowse.tui import cli
from modelbrowse.tui.parser import build_parser
from tests.core.test_core_structure import small_state


def printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> tuple[str, str]:
    """The output of `--print` with the structure, then with the full open only."""
    assert cli.main(argv) == 0
    fast = capsys.readouterr().out
    with monkeypatch.context() as patch:
        patch.setattr(cli, "_print_from_structure", lambda args: None)
        assert cli.main(argv) == 0
    return fast, capsys.readouterr().out


def write_sources(tmp_path: Path) -> dict[str, Path]:
    state = small_state()
    sources = {"state": tmp_path / "state.pt", "wrapped": tmp_path / "wrapped.pt"}
    torch.save(state, sources["state"])
    torch.save({f"module.{k}": v for k, v in state.items()}, sources["wrapped"])
    del state["head.weight"]
    sources["aliases"] = tmp_path / "aliases.safetensors"
    save_file(
        state,
        sources["aliases"],
        metadata={"modelbrowse.aliases": '{"head.weight": "embed.weight"}', "step": "7"},
    )
    folder = tmp_path / "folder"
    folder.mkdir()
    save_file(state, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4}))
    sources["folder"] = folder
    return sources


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("state", []),
        ("state", ["--depth", "1"]),
        ("state", ["--select", "blocks.*"]),
        ("state", ["--strip-prefix", "blocks."]),
        ("wrapped", []),
        ("wrapped", ["--keep-prefix"]),
        ("aliases", []),
        ("aliases", ["--select", "re:.*proj"]),
        ("folder", ["--keys-only"]),
    ],
)
def test_print_from_the_structure_is_the_full_opens_text(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    extra: list[str],
) -> None:
    path = write_sources(tmp_path)[name]
    argv = [str(path), "--print", *extra]
    options = cli._options(build_parser().parse_args(argv))
    assert options.read_structure() is not None  # the structure covers it
    fast, full = printed(capsys, monkeypatch, argv)
    assert fast == full
    assert ("target_modules=" if "--select" in extra else "Total params:") in fast


def test_a_training_checkpoint_prints_its_entries_from_the_full_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "model": small_state()}, path)
    fast, full = printed(capsys, monkeypatch, [str(path), "--print"])
    assert fast == full
    assert [line.split() for line in fast.splitlines() if line.startswith("epoch")] == [
        ["epoch", "3"]
    ]


def test_print_of_a_safetensors_file_never_imports_torch(tmp_path: Path) -> None:
    path = write_sources(tmp_path)["aliases"]
    code = (
        "import sys\n"
        "from modelbrowse.tui.cli import main\n"
        f"status = main([{str(path)!r}, '--print', '--select', 'blocks.*'])\n"
        f"status += main([{str(path)!r}, '--print', '--depth', '1'])\n"
        "print(status, [m for m in ('torch', 'textual') if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert lines[-1] == "0 []"
    assert "blocks.*: 5 modules, 36 parameters" in lines
    assert lines.index("embed Group 32") < lines.index("head Group 32")
    tree = lines[[line.startswith("target_modules=") for line in lines].index(True) + 1 :]
    assert "blocks Group 36" in tree
    assert not any(line.startswith("blocks.0 ") for line in tree)  # --depth 1 stops above


@pytest.mark.parametrize("extra", [[], ["--depth", "2"], ["--strip-prefix", "a."]])
def test_a_safetensors_file_prints_from_its_sorted_keys_without_an_index(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
) -> None:
    # Keys whose sorted order interleaves modules (`-` and `!` sort before the dot).
    state = {
        key: torch.ones(i + 1)
        for i, key in enumerate(["a-b.w", "a.b!.w", "a.b.c.w", "a.b.w", "a0.w", "top", "a.x\tz.w"])
    }
    state["a.b.running_mean"] = torch.zeros(3)
    state["a.ids"] = torch.arange(4)
    path = tmp_path / "keys.safetensors"
    save_file(state, path)
    argv = [str(path), "--print", *extra]
    with monkeypatch.context() as patch:  # the one pass prints it: no node index is built
        patch.setattr("modelbrowse.core.structure_index.preview_index", lambda s: 1 / 0)
        assert cli.main(argv) == 0
        alone = capsys.readouterr().out
    fast, full = printed(capsys, monkeypatch, argv)
    assert alone == fast == full
    assert "x\\tz  " in full  # escaped, as every printed key is
