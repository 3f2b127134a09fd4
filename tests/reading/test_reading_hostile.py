"""Hostile weight files, one per attack class: each is refused in one line (exit 2 from
`--print`), runs nothing, and takes bounded time; or it opens with what could not be read named."""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modelbrowse.core.reading import Limits, ReadError
from modelbrowse.core.reading.nested import flatten
from modelbrowse.core.reading.torch_files import read_torch_zip
from modelbrowse.tui.cli import main
from tests.e2e.test_cli import run_command
from tests.e2e.test_cli_checkpoints import the_error_line
from tests.reading.hostile_files import (
    code_running_pt,
    cycle_pickle,
    dag_pickle,
    deep_pickle,
    rewritten,
    safetensors_bytes,
    safetensors_with_metadata,
    torch_zip,
    zip_bomb,
)

HANG_S = 20  # generous: each case is refused in well under a second


def refused(path: Path, capsys: pytest.CaptureFixture[str], *words: str, named: bool = True) -> str:
    """`modelbrowse PATH --print`: exit 2, one line naming the file and each word, in time."""
    start = time.monotonic()
    assert main([str(path), "--print"]) == 2
    assert time.monotonic() - start < HANG_S
    line = the_error_line(capsys.readouterr())
    assert path.name in line or not named
    for word in words:
        assert word in line, line
    return line


def opens(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main([str(path), "--print", "--depth", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return [" ".join(line.split()) for line in captured.out.splitlines()]


# --- code in pickles (the whole file, a disguised name, a shard) -----------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_reduce_to_os_system_is_named_and_never_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], legacy: bool
) -> None:
    marker = tmp_path / "pwned"
    path = code_running_pt(tmp_path / "model.pt", marker, legacy)
    line = refused(path, capsys, "it imports posix.system", "--trust-pickle")
    assert "runs code from the file" in line
    assert not marker.exists()


def test_the_installed_command_refuses_it_too(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = code_running_pt(tmp_path / "model.pt", marker)
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    result = run_command(str(path), "--print", env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "posix.system" in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "layout",
    ["named-safetensors", "hf-bin", "hf-shard"],
)
def test_a_pickle_under_a_weights_name_is_told_by_its_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "model"
    folder.mkdir()
    if layout == "named-safetensors":
        target = code_running_pt(folder / "model.safetensors", marker)
    else:
        (folder / "config.json").write_text('{"model_type": "bert"}')
        name = "pytorch_model.bin" if layout == "hf-bin" else "pytorch_model-00001.bin"
        code_running_pt(folder / name, marker)
        target = folder
        if layout == "hf-shard":
            index = {"weight_map": {"weight": name}}
            (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    assert main([str(target), "--print"]) == 2
    line = the_error_line(capsys.readouterr())
    assert "posix.system" in line and "--trust-pickle" in line
    assert not marker.exists()


def test_an_index_naming_a_shard_outside_its_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    save_file({"w": torch.ones(2)}, tmp_path / "elsewhere.safetensors")
    index = {"weight_map": {"w": "../elsewhere.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert main([str(folder), "--print"]) == 2
    assert "names a shard outside its folder" in the_error_line(capsys.readouterr())


# --- case 10: nesting a walk must refuse --------------------------------------------------


@pytest.mark.parametrize(
    ("pickle_bytes", "words"),
    [
        (dag_pickle(60), ("shares one dict under many keys",)),
        (dag_pickle(20), ("shares one dict under many keys",)),
        (cycle_pickle(), ("contains itself",)),
        (deep_pickle(100_000), ("levels deep",)),
    ],
    ids=["dag-60-levels", "dag-2**20-keys", "cycle", "100k-deep"],
)
def test_nested_dicts_that_expand_loop_or_nest_deep_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pickle_bytes: bytes, words: tuple[str]
) -> None:
    assert len(pickle_bytes) < 2_000_000
    path = torch_zip(tmp_path / "nested.pt", pickle_bytes)
    refused(path, capsys, *words)


def test_the_walk_counts_every_entry_against_its_budget() -> None:
    wide = {f"k{i}": {"w": i} for i in range(100)}
    with pytest.raises(ReadError, match="more than 150 nested entries"):
        list(flatten(wide, "x", Limits(visits=150)))
    assert len(list(flatten(wide, "x"))) == 100


# --- case 12 and 14: declared sizes against the file --------------------------------------


def test_a_data_pkl_that_inflates_a_thousandfold_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = zip_bomb(tmp_path / "bomb.pt")
    assert path.stat().st_size < 100_000
    refused(path, capsys, "inflates", "zip bomb")


def test_a_pickle_that_inflates_past_its_limit_is_refused(tmp_path: Path) -> None:
    path = zip_bomb(tmp_path / "bomb.pt", inflated=8 << 20)
    with pytest.raises(ReadError, match="declares 8,388,608 bytes; at most 1,048,576"):
        read_torch_zip(path, Limits(pickle_bytes=1 << 20))


def test_a_storage_shorter_than_it_declares_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "short.pt"
    torch.save({"w": torch.ones(4)}, path)
    rewritten(path, {"data/0": b"\0" * 4})
    refused(path, capsys, "declares 16 bytes but its member holds 4")


def test_a_legacy_file_cut_inside_its_data_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(4)}, path, _use_new_zipfile_serialization=False)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 4)
    refused(path, capsys, "truncated")


def test_a_big_endian_archive_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.pt"
    torch.save({"w": torch.ones(4)}, path)
    rewritten(path, {"byteorder": b"big"})
    refused(path, capsys, "big-endian")


@pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions")
def test_quantized_and_sparse_tensors_are_named_not_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.pt"
    quantized = torch.quantize_per_tensor(torch.ones(4), 0.1, 0, torch.qint8)
    torch.save({"w": torch.ones(4), "q": quantized, "s": torch.eye(3).to_sparse()}, path)
    lines = opens(path, capsys)
    (row,) = [line for line in lines if line.startswith("not loaded")]
    assert "a quantized tensor" in row and "a sparse tensor" in row and "q, s" in row


# --- case 15: the app's own metadata, deep JSON, deep keys ---------------------------------


@pytest.mark.parametrize(
    ("aliases", "shown"),
    [
        ("{not json", "ignored: is not valid JSON"),
        ('["w"]', "ignored: a JSON list, not an object"),
        ("[" * 100_000 + "]" * 100_000, "ignored: is nested too deeply"),
        (json.dumps({f"a{i}": "missing" for i in range(300_000)}), "300,000 ignored"),
    ],
    ids=["bad-json", "a-list", "deep-array", "300k-aliases-to-nothing"],
)
def test_unusable_aliases_are_ignored_with_a_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], aliases: str, shown: str
) -> None:
    path = tmp_path / "aliased.safetensors"
    path.write_bytes(safetensors_with_metadata({"modelbrowse.aliases": aliases}))
    lines = opens(path, capsys)
    (row,) = [line for line in lines if line.startswith("aliases")]
    assert shown in row


def test_a_deeply_nested_header_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep.safetensors"
    path.write_bytes(safetensors_bytes(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    refused(path, capsys, "nested too deeply")


def test_a_key_of_thousands_of_parts_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deep-key.safetensors"
    save_file({"a." * 5000 + "w": torch.ones(1)}, path)
    refused(path, capsys, "more than 200 parts", named=False)  # the key is named


def test_overlapping_safetensors_offsets_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    path = tmp_path / "overlap.safetensors"
    path.write_bytes(safetensors_bytes(header, bytes(12)))
    refused(path, capsys, "overlaps")


def test_unsorted_safetensors_offsets_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = {
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
        "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    }
    path = tmp_path / "unsorted.safetensors"
    path.write_bytes(safetensors_bytes(header, struct.pack("<2f", 1.0, 2.0)))
    assert main([str(path), "--print", "--depth", "1"]) == 0
    assert "b" in capsys.readouterr().out


def test_no_file_was_left_behind(tmp_path: Path) -> None:
    """The builders above write only inside their own folders (a sanity check of the helper)."""
    assert not any(Path(os.getcwd()).glob("pwned*"))
    shutil.rmtree(tmp_path, ignore_errors=True)
