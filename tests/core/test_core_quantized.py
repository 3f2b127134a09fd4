"""Quantized checkpoints: true parameter counts, one logical weight per layer, the same tree
before torch and after, and their pieces given back unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from modelbrowse.core.edits.base import EditError
from modelbrowse.core.edits.reinit import Reinit
from modelbrowse.core.edits.weights import DeleteKeys
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.nodes import NodeKind
from modelbrowse.core.sources.checkpoint import CheckpointSource, resolve_checkpoint
from modelbrowse.core.structure import read_structure
from modelbrowse.core.structure_index import StructureIndex, preview_index
from modelbrowse.tui.cli import main
from tests.quantized_support import SCHEMES, QuantizedModel, write_quantized

Q_PROJ = "model.layers.0.self_attn.q_proj"
# The weights of the tiny Llama's layers' linear layers (q, k, v, o, gate, up, down) x 2.
QUANTIZED_WEIGHTS = 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 128 * 64)


@pytest.fixture(scope="module", params=SCHEMES)
def quantized(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    scheme: str = request.param
    return write_quantized(tmp_path_factory.mktemp(scheme), scheme)


def opened(folder: Path) -> tuple[CheckpointSource, NodeIndex]:
    source = resolve_checkpoint(str(folder), {}, None, None, None)
    model, _ = source.build_structure(0)
    return source, NodeIndex(model)


def previewed(folder: Path) -> StructureIndex:
    structure = read_structure(str(folder))
    assert structure is not None
    index = preview_index(structure)
    assert index is not None
    return index


def test_counts_are_the_unquantized_model_s(quantized: QuantizedModel) -> None:
    _, full = opened(quantized.folder)
    shown = previewed(quantized.folder)
    params = full.totals().params
    assert abs(params - quantized.params) <= quantized.params // 100  # the 1%
    assert params == quantized.params == shown.totals().params
    q_proj = full.node(f"{Q_PROJ}.weight")
    assert (q_proj.kind, q_proj.type_name, q_proj.obj.numel()) == (
        NodeKind.QUANTIZED,
        "Quantized",
        64 * 64,
    )
    assert full.totals(Q_PROJ).params == 64 * 64
    assert full.totals().trainable == params - QUANTIZED_WEIGHTS
    # the size is the bytes stored, pieces included
    stored = sum(t.numel() * t.element_size() for t in full.model.state_dict().values())
    assert full.totals().nbytes == stored


def test_the_tree_before_torch_is_the_full_open_s(quantized: QuantizedModel) -> None:
    source, full = opened(quantized.folder)
    shown = previewed(quantized.folder)
    assert list(shown.paths()) == list(full.paths())
    for path in full.paths():
        a, b = shown.node(path), full.node(path)
        assert (a.kind, a.type_name, a.children) == (b.kind, b.type_name, b.children), path
        assert shown.totals(path) == full.totals(path), path
        if not b.is_module:
            assert tuple(a.obj.shape) == tuple(b.obj.shape)
            assert str(a.obj.dtype).removeprefix("torch.") == str(b.obj.dtype).removeprefix(
                "torch."
            )
    structure = read_structure(str(quantized.folder))
    assert structure is not None and structure.rows == source.info
    assert (
        "architecture",
        "from the keys: quantized weights are shown as stored, one per layer",
    ) in (source.info)


def test_the_pieces_are_given_back_unchanged(quantized: QuantizedModel) -> None:
    from safetensors.torch import load_file

    _, full = opened(quantized.folder)
    stored = load_file(quantized.folder / "model.safetensors")
    state = full.model.state_dict()
    assert set(state) == set(stored)
    for key, tensor in stored.items():
        assert state[key].dtype == tensor.dtype and torch.equal(
            state[key].view(torch.uint8), tensor.view(torch.uint8)
        ), key


def test_print_counts_true_parameters(quantized: QuantizedModel, capsys: Any) -> None:
    assert main([str(quantized.folder), "--print", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert f"Total params: {quantized.params:,} (106.8K)" in out
    assert "quantization " in out and "14 weights (config.json)" in out


def test_print_detail_of_a_quantized_weight(quantized: QuantizedModel, capsys: Any) -> None:
    assert main([str(quantized.folder), "--print", "--detail", f"{Q_PROJ}.weight"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{Q_PROJ}.weight"
    assert "kind           quantized weight" in lines
    assert "shape          (64, 64)" in lines
    assert "parameters     4,096 (4.1K)" in lines
    assert "statistics     exact" in lines
    assert any(line.startswith("stored as") for line in lines)


def test_deleting_a_quantized_weight_removes_its_pieces_and_undo_restores_them(
    tmp_path: Path,
) -> None:
    model = write_quantized(tmp_path / "m", "gptq")
    _, full = opened(model.folder)
    before = dict(full.model.state_dict())
    edit = DeleteKeys(f"{Q_PROJ}.weight")
    edit.apply(full.model)
    full.refresh_structure([f"{Q_PROJ}.weight"])
    after = full.model.state_dict()
    gone = {f"{Q_PROJ}.{p}" for p in ("qweight", "qzeros", "scales", "g_idx")}
    assert set(before) - set(after) == gone
    assert f"{Q_PROJ}.weight" not in full
    assert full.totals().params == model.params - 64 * 64
    assert edit.as_code() == [
        f"state_dict = {{k: v for k, v in state_dict.items() if k not in {sorted(gone)!r}}}"
    ]
    edit.undo(full.model)
    full.refresh_structure([f"{Q_PROJ}.weight"])
    assert list(full.model.state_dict()) == list(before)
    assert full.node(f"{Q_PROJ}.weight").kind is NodeKind.QUANTIZED
    assert full.totals().params == model.params


def test_a_quantized_weight_cannot_be_reinitialised(tmp_path: Path) -> None:
    model = write_quantized(tmp_path / "m", "bnb-nf4")
    _, full = opened(model.folder)
    with pytest.raises(EditError, match=r"is a quantized weight \(bitsandbytes nf4\): its stored"):
        Reinit(f"{Q_PROJ}.weight", "zeros", 0).apply(full.model)


def test_freezing_counts_keep_quantized_weights_frozen(tmp_path: Path) -> None:
    model = write_quantized(tmp_path / "m", "awq")
    _, full = opened(model.folder)
    assert full.totals().frozen == QUANTIZED_WEIGHTS
    for value in (False, True):
        for parameter in full.parameters():
            parameter.requires_grad_(value)
        full.set_trainable("", value)
        expected = model.params - QUANTIZED_WEIGHTS if value else 0
        assert full.totals().trainable == expected
        assert full.totals(Q_PROJ).trainable == 0
