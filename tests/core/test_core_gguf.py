"""GGUF files opened as the app opens them: the tree before torch and after, true parameter
counts, statistics of dequantized weights against the gguf package's own, read-only edits."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader

from modelbrowse.core.errors import ModelBrowseError, SourceError
from modelbrowse.core.index import NodeIndex
from modelbrowse.core.quantized import QuantizedTensor, QuantizedValuesError
from modelbrowse.core.saving.weights import SaveError, save_weights
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.core.sources.checkpoint import CheckpointSource
from modelbrowse.core.sources.gguf_files import gguf_decoder
from modelbrowse.core.stats import compute_stats, estimate_stats, unavailable_reason
from modelbrowse.core.structure import read_structure
from modelbrowse.core.structure_index import StructureIndex
from modelbrowse.core.text_tree import render_rows, render_source_info, render_tree_text
from tests.gguf_support import llama_tensors, reference_values, write_gguf


@pytest.fixture
def llama(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf", layers=2)


def opened(path: Path) -> tuple[CheckpointSource, NodeIndex]:
    source = resolve_source(str(path))
    assert isinstance(source, CheckpointSource)
    model, is_meta = source.build_structure()
    assert not is_meta
    return source, NodeIndex(model)


def test_counts_are_logical_parameters_and_sizes_the_stored_bytes(llama: Path) -> None:
    reader = GGUFReader(llama)
    _, index = opened(llama)
    totals = index.totals()
    assert totals.params == sum(t.n_elements for t in reader.tensors)
    assert totals.nbytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert totals.tensors == len(reader.tensors) == 11
    node = index.find("blk[1].attn_q.weight")  # written as a user writes it
    assert node.path == "blk.1.attn_q.weight"
    assert tuple(node.obj.shape) == (256, 256)
    assert node.obj.numel() == 65_536
    assert node.obj.numel() * node.obj.element_size() == 256 * 144  # 256 Q4_K blocks
    assert index.totals("blk.0").params == 256 + 65_536 + 16_384 + 131_072


def test_the_tree_before_torch_is_the_full_opens(llama: Path) -> None:
    structure = read_structure(str(llama))
    assert structure is not None
    preview = StructureIndex(structure)
    source, index = opened(llama)
    assert list(preview.paths()) == list(index.paths())
    assert preview.totals() == index.totals()
    assert render_tree_text(preview) == render_tree_text(index)
    assert render_rows(structure.rows) == render_source_info(source)
    stand_in = preview.node("blk.0.attn_q.weight").obj
    assert stand_in.shape == (256, 256) and stand_in.quantization.scheme == "Q4_K"
    assert preview.node("blk.0.attn_q.weight").kind == index.node("blk.0.attn_q.weight").kind


def test_the_tree_follows_the_files_order(llama: Path) -> None:
    _, index = opened(llama)
    assert [n.path for n in index.children("")] == [
        "token_embd",
        "blk",
        "output_norm",
        "output",
    ]
    assert [n.name for n in index.children("blk")] == ["0", "1"]


@pytest.mark.parametrize("name", ["blk.0.attn_q.weight", "blk.1.ffn_up.weight"])
def test_statistics_of_a_quantized_weight_are_of_its_dequantized_values(
    llama: Path, name: str
) -> None:
    _, index = opened(llama)
    tensor = index.node(name).obj
    assert isinstance(tensor, QuantizedTensor)
    assert unavailable_reason(tensor) is None
    values = reference_values(llama, name).astype(np.float64)
    exact = compute_stats(tensor)
    assert exact.numel == values.size and not exact.estimated
    assert exact.mean == pytest.approx(values.mean(), rel=1e-6)
    assert exact.std == pytest.approx(values.std(ddof=1), rel=1e-6)
    assert (exact.min, exact.max) == pytest.approx((values.min(), values.max()))
    assert exact.zero_fraction == pytest.approx(np.mean(values == 0))
    estimate = estimate_stats(tensor, sample_size=1024)
    assert estimate.estimated
    assert values.min() <= estimate.min <= estimate.max <= values.max()
    assert estimate.mean == pytest.approx(values.mean(), abs=3 * values.std() / 16)


def test_plain_tensors_are_views_of_the_file(llama: Path) -> None:
    _, index = opened(llama)
    embedding = index.node("token_embd.weight").obj
    assert embedding.dtype == torch.float16 and tuple(embedding.shape) == (100, 256)
    np.testing.assert_array_equal(
        embedding.detach().float().numpy(), reference_values(llama, "token_embd.weight")
    )


def test_a_type_the_gguf_package_cannot_dequantize_says_so(tmp_path: Path) -> None:
    tensors = llama_tensors(1)
    tensors["extra.weight"] = (np.zeros((2, 40), np.uint8), "Q8_1")
    _, index = opened(write_gguf(tmp_path / "q81.gguf", layers=1, tensors=tensors))
    tensor = index.node("extra.weight").obj
    assert tuple(tensor.shape) == (2, 32)
    assert unavailable_reason(tensor) == (
        "dequantization of Q8_1 is not supported (by the gguf package installed)"
    )


def test_without_the_gguf_package_the_tree_opens_and_statistics_name_the_extra(
    llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf_decoder.cache_clear()
    monkeypatch.setitem(sys.modules, "gguf", None)
    monkeypatch.setitem(sys.modules, "gguf.quants", None)
    try:
        _, index = opened(llama)
        reason = unavailable_reason(index.node("blk.0.attn_q.weight").obj)
    finally:
        gguf_decoder.cache_clear()
    assert reason == (
        "statistics of Q4_K weights need the gguf package: pip install 'modelbrowse[gguf]'"
    )


def test_quantized_weights_are_read_only(llama: Path, tmp_path: Path) -> None:
    source, index = opened(llama)
    assert source.edit_refusal is not None
    assert "a GGUF file is read-only here" in source.edit_refusal
    tensor = index.node("blk.0.attn_q.weight").obj
    with pytest.raises(QuantizedValuesError, match="Q4_K weights are read as stored"):
        tensor.add(1)
    with pytest.raises(SaveError, match=r"blk\.0\.attn_q\.weight is a Q4_K weight: writing it"):
        save_weights(index.model, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_a_file_of_plain_tensors_is_not_read_only(tmp_path: Path) -> None:
    tensors = {"w.weight": (np.ones((4, 4), np.float32), "F32")}
    source, _ = opened(write_gguf(tmp_path / "plain.gguf", tensors=tensors))
    assert source.edit_refusal is None


def test_arch_does_not_apply(llama: Path) -> None:
    with pytest.raises(SourceError, match="quantized weights: --arch does not apply"):
        resolve_source(str(llama), arch="resnet18")


def test_a_split_set_opens_from_any_part(tmp_path: Path) -> None:
    write_gguf(tmp_path / "tiny.gguf", split_max_tensors=4)
    second = tmp_path / "tiny-00002-of-00003.gguf"
    source, index = opened(second)
    assert index.totals().tensors == 11
    assert ("format", "GGUF v3, split in 3 files") in source.info
    assert len(source.files) == 3
    (tmp_path / "tiny-00003-of-00003.gguf").unlink()
    with pytest.raises(ModelBrowseError, match="1 are missing beside it"):
        resolve_source(str(second))


def test_a_folder_holding_a_split_set_opens_it(tmp_path: Path) -> None:
    write_gguf(tmp_path / "tiny.gguf", split_max_tensors=4)
    structure = read_structure(str(tmp_path))
    assert structure is not None and len(structure.tensors) == 11
    _, index = opened(tmp_path)
    assert index.totals().tensors == 11
