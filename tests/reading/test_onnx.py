"""ONNX models: told by their structure, initializers mapped from the model or from external data
beside it, the graph described at the root, and hostile files refused in one line."""

from __future__ import annotations

import builtins
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from onnx import TensorProto

from modelbrowse.core.reading import Limits, ReadError
from modelbrowse.core.reading.file_kinds import FileKind, sniff
from modelbrowse.core.reading.onnx_model import read_onnx
from modelbrowse.core.reading.protobuf import encode_varint
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.tui.cli import main
from tests.e2e.test_cli_checkpoints import squeezed, the_error_line
from tests.onnx_support import export_tiny, external_tensor, model_bytes, write_model
from tests.reading.test_reading_hostile import refused

FLOATS = torch.arange(4, dtype=torch.float32).numpy().tobytes()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    model = export_tiny(path)
    return path, model.state_dict()


def test_the_torch_exporters_file_is_told_by_its_structure(
    exported: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, _ = exported
    assert b"onnx" not in path.read_bytes()[:64].lower()  # it names itself "pytorch"
    assert sniff(path) is FileKind.ONNX


def test_print_shows_the_graph_at_the_root_and_the_initializers_as_a_tree(
    exported: tuple[Path, dict[str, torch.Tensor]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = exported
    assert main([str(path), "--print"]) == 0
    lines = squeezed(capsys.readouterr().out)
    version = torch.__version__.split("+")[0]
    assert lines[0] == "format ONNX (read-only)"
    assert f"producer pytorch {version}" in lines
    assert "input x float32 (batch, 4)" in lines
    assert "output y float32 (batch, 3)" in lines
    assert "op Gemm 2" in lines
    assert "op Relu 1" in lines
    assert "nodes 3 (2 operator types)" in lines
    assert any(line.startswith("opset ai.onnx ") for line in lines)
    total = sum(t.numel() for t in state.values())
    assert "block Group 40" in lines
    assert "block.fc1 Group 40" in lines
    assert "head Group 27" in lines
    assert f"Total params: {total} trainable: {total} frozen: 0 buffers: 0 size: 268 B" in lines


def test_the_values_are_the_exported_models(
    exported: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, state = exported
    model = resolve_source(str(path)).build_real()
    assert model.state_dict().keys() == state.keys()
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_external_data_beside_the_model_is_mapped(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    state = export_tiny(path, external=True).state_dict()
    assert path.stat().st_size < 1000  # the values are in weights.data
    source = resolve_source(str(path))
    assert source.files == [path, (tmp_path / "weights.data").resolve()]
    assert ("external data", "weights.data") in source.info
    for key, tensor in source.build_real().state_dict().items():
        assert torch.equal(tensor, state[key]), key


def test_statistics_of_an_initializer_are_those_of_its_values(
    exported: tuple[Path, dict[str, torch.Tensor]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, state = exported
    assert main([str(path), "--print", "--detail", "head.weight"]) == 0
    lines = squeezed(capsys.readouterr().out)
    weight = state["head.weight"]
    assert f"mean {weight.mean().item():.6g}" in lines
    assert f"max {weight.max().item():.6g}" in lines
    assert "shape (3, 8)" in lines


def test_names_that_do_not_nest_are_shown_with_slashes(tmp_path: Path) -> None:
    tensors = []
    for name in ("a.b", "a", "x..y", "onnx::Gemm_3"):
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4], raw_data=FLOATS)
        tensors.append(tensor)
    model = read_onnx(write_model(tmp_path / "names.onnx", *tensors))
    assert list(model.tensors) == ["a/b", "a", "x//y", "onnx::Gemm_3"]
    assert ("names", "2 initializer name(s) shown with '/' for '.': they do not nest") in model.rows


def test_values_it_cannot_map_are_named_not_loaded(tmp_path: Path) -> None:
    varints = TensorProto(name="w16", data_type=TensorProto.FLOAT16, dims=[2], int32_data=[1, 2])
    strings = TensorProto(name="words", data_type=TensorProto.STRING, dims=[1], string_data=[b"a"])
    plain = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], raw_data=FLOATS)
    model = read_onnx(write_model(tmp_path / "m.onnx", plain, varints, strings))
    assert list(model.tensors) == ["w"]
    assert ("not loaded", "w16 (values in int32_data), words (STRING values)") in model.rows


def test_a_missing_onnx_package_is_one_line_naming_the_extra(
    exported: tuple[Path, dict[str, torch.Tensor]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = exported
    real_import = builtins.__import__

    def no_onnx(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "onnx" or name.startswith("onnx."):
            raise ModuleNotFoundError("No module named 'onnx'", name="onnx")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "onnx", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_onnx)
    assert main([str(path), "--print"]) == 2
    line = the_error_line(capsys.readouterr())
    assert "needs the onnx package: pip install 'modelbrowse[onnx]'" in line


# --- hostile models ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("/etc/passwd", "is not a file inside the model's folder"),
        ("../outside.bin", "is not a file inside the model's folder"),
        ("sub/../../outside.bin", "is not a file inside the model's folder"),
        ("C:\\weights.bin", "is not a file inside the model's folder"),
        ("", "is not a file inside the model's folder"),
        ("missing.bin", "its external data file 'missing.bin' is missing"),
    ],
)
def test_external_data_outside_the_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], location: str, words: str
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside.bin").write_bytes(FLOATS * 4)
    path = write_model(folder / "m.onnx", external_tensor("w", location))
    line = refused(path, capsys, words)
    assert "initializer 'w'" in line


def test_a_link_out_of_the_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(FLOATS * 4)
    (folder / "w.bin").symlink_to(tmp_path / "secret.bin")
    path = write_model(folder / "m.onnx", external_tensor("w", "w.bin"))
    refused(path, capsys, "its external data 'w.bin' is a link out of the model's folder")


def test_a_link_inside_the_folder_is_followed(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "real.bin").write_bytes(FLOATS)
    (tmp_path / "w.bin").symlink_to(tmp_path / "data" / "real.bin")
    model = read_onnx(write_model(tmp_path / "m.onnx", external_tensor("w", "w.bin")))
    assert model.tensors["w"].storage.file == str(tmp_path / "data" / "real.bin")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_external_data_in_a_named_pipe_is_refused_without_waiting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.mkfifo(tmp_path / "pipe.bin")
    path = write_model(tmp_path / "m.onnx", external_tensor("w", "pipe.bin"))
    refused(path, capsys, "its external data 'pipe.bin' is not a regular file")


@pytest.mark.parametrize(
    ("offset", "length", "words"),
    [
        (0, 8, "its external data says 8 bytes at 0; its shape needs 16"),
        (8, None, "its external data ends at byte 24 of 'w.bin', which has 16 (truncated?)"),
        (-4, None, "its external data says 16 bytes at -4"),
    ],
)
def test_external_data_that_lies_about_its_size_is_refused(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    offset: int,
    length: int | None,
    words: str,
) -> None:
    (tmp_path / "w.bin").write_bytes(FLOATS)
    tensor = external_tensor("w", "w.bin", offset=offset, length=length)
    refused(write_model(tmp_path / "m.onnx", tensor), capsys, words)


def test_raw_data_that_disagrees_with_the_shape_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1000, 1000], raw_data=FLOATS)
    words = "initializer 'w' holds 16 bytes but its shape (1000, 1000) of float32 needs 4,000,000"
    refused(write_model(tmp_path / "m.onnx", tensor), capsys, words)


def test_a_huge_dimension_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[-1, 4], raw_data=FLOATS)
    refused(write_model(tmp_path / "m.onnx", tensor), capsys, "has dimensions", "not sizes")


def test_a_truncated_model_is_named_damaged(
    exported: tuple[Path, dict[str, torch.Tensor]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = exported
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[:300])
    refused(cut, capsys, "is a damaged ONNX model: its graph says", "(truncated?)")


def test_a_name_that_is_not_utf8_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tensor = TensorProto(name="WEIGHT", data_type=TensorProto.FLOAT, dims=[4], raw_data=FLOATS)
    data = model_bytes(tensor).replace(b"WEIGHT", b"W\xffIGHT")
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    refused(path, capsys, "a name that is not UTF-8")


def test_control_characters_in_names_stay_inert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "evil\x1b[2J\nname.weight"
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4], raw_data=FLOATS)
    assert main([str(write_model(tmp_path / "m.onnx", tensor)), "--print"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "evil\\x1b[2J\\nname" in out


def test_a_graph_past_the_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], raw_data=FLOATS)
    path = write_model(tmp_path / "m.onnx", tensor)
    with pytest.raises(ReadError, match=r"its graph takes .* bytes without the initializers"):
        read_onnx(path, Limits(onnx_graph_bytes=10))


def test_deep_nesting_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A graph whose node holds a graph attribute holding a node ... 300 deep."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2]) + encode_varint(len(payload)) + payload

    graph = b""
    for _ in range(300):
        attribute = field(1, b"g") + field(6, graph) + bytes([20 << 3, 5])  # type GRAPH
        graph = field(1, field(4, b"If") + field(5, attribute))
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], raw_data=FLOATS)
    graph += field(5, tensor.SerializeToString())
    path = tmp_path / "deep.onnx"
    path.write_bytes(b"\x08\x09" + field(7, graph))
    refused(path, capsys, "deep.onnx is a damaged ONNX model")


def test_a_producer_name_that_is_not_utf8_is_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tensor = TensorProto(name="w.x", data_type=TensorProto.FLOAT, dims=[4], raw_data=FLOATS)
    path = tmp_path / "m.onnx"
    path.write_bytes(model_bytes(tensor).replace(b"tests", b"te\xffts"))
    assert main([str(path), "--print"]) == 0
    assert "producer te\\xffts" in squeezed(capsys.readouterr().out)
