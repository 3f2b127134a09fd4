"""The keys' tree read without torch: the same paths, kinds, totals and ties as the full open."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modelbrowse.core.index import NodeIndex
from modelbrowse.core.sources.checkpoint import resolve_checkpoint
from modelbrowse.core.sources.files import CheckpointOptions
from modelbrowse.core.structure import read_structure
from modelbrowse.core.structure_index import StructureIndex, preview_index
from modelbrowse.widgets.detail_pane import dtype_text


def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    weight = torch.randn(8, 4)
    return {
        "embed.weight": weight,
        "blocks.0.norm.weight": torch.ones(4),
        "blocks.0.norm.running_mean": torch.zeros(4),
        "blocks.0.norm.num_batches_tracked": torch.tensor(3),
        "blocks.0.proj.weight": torch.randn(4, 4),
        "blocks.1.proj.weight": torch.randn(4, 4, dtype=torch.float16),
        "blocks.1.ids": torch.arange(5),
        "empty": torch.zeros(0),
        "head.weight": weight,  # tied to embed.weight
    }


def full_index(path: Path, options: CheckpointOptions | None = None) -> NodeIndex:
    source = resolve_checkpoint(str(path), {}, None, None, options)
    model, _ = source.build_structure(0)
    return NodeIndex(model)


def preview(path: Path, **options: object) -> StructureIndex:
    structure = read_structure(str(path), **options)  # type: ignore[arg-type]
    assert structure is not None
    index = preview_index(structure)
    assert index is not None
    return index


def assert_same_tree(shown: StructureIndex, full: NodeIndex) -> None:
    assert list(shown.paths()) == list(full.paths())
    for path in full.paths():
        a, b = shown.node(path), full.node(path)
        assert (a.kind, a.type_name, a.children) == (b.kind, b.type_name, b.children), path
        assert shown.totals(path) == full.totals(path), path
        assert shown.aliases(path) == full.aliases(path), path
        if not b.is_module:
            x, y = a.obj, b.obj
            assert tuple(x.shape) == tuple(y.shape)
            assert dtype_text(x.dtype) == dtype_text(y.dtype)
            assert (x.requires_grad, x.numel(), x.element_size()) == (
                y.requires_grad,
                y.numel(),
                y.element_size(),
            )
            assert str(x.device) == str(y.device)


def test_a_state_dict_file_previews_as_the_full_open_shows_it(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save(small_state(), path)
    shown, full = preview(path), full_index(path)
    assert_same_tree(shown, full)
    assert shown.is_shared("head.weight") and shown.root.type_name == "Weights"
    assert shown.node("blocks.0.norm.running_mean").type_name == "Tensor"


def test_a_safetensors_file_with_aliases_previews_as_the_full_open_shows_it(
    tmp_path: Path,
) -> None:
    state = small_state()
    del state["head.weight"]
    path = tmp_path / "model.safetensors"
    save_file(state, path, metadata={"modelbrowse.aliases": '{"head.weight": "embed.weight"}'})
    assert_same_tree(preview(path), full_index(path))


def test_a_training_checkpoint_previews_its_weights_entry(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    state = {f"module.{k}": v for k, v in small_state().items()}
    torch.save({"epoch": 3, "model": state, "ema": dict(state)}, path)
    structure = read_structure(str(path))
    assert structure is not None
    assert ("weights from", "['model'] (also there: ema; choose with --key)") in structure.rows
    assert_same_tree(preview(path), full_index(path))
    keyed = preview(path, key="ema", keep_prefix=True)
    assert_same_tree(keyed, full_index(path, CheckpointOptions(key="ema", keep_prefix=True)))
    assert "module" in [n.name for n in keyed.children("")]


def test_a_sharded_folder_previews_its_keys(tmp_path: Path) -> None:
    state = small_state()
    del state["head.weight"]
    keys = list(state)
    save_file({k: state[k] for k in keys[:4]}, tmp_path / "a.safetensors")
    save_file({k: state[k] for k in keys[4:]}, tmp_path / "b.safetensors")
    weight_map = {k: "a.safetensors" if k in keys[:4] else "b.safetensors" for k in keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    options = CheckpointOptions(keys_only=True)
    assert_same_tree(preview(tmp_path, keys_only=True), full_index(tmp_path, options))
    structure = read_structure(str(tmp_path), keys_only=True)
    assert structure is not None and ("config model_type", "llama") in structure.rows


@pytest.mark.parametrize("case", ["options", "torchscript", "config", "conflict", "missing"])
def test_what_only_the_full_open_can_show_is_not_previewed(tmp_path: Path, case: str) -> None:
    path = tmp_path / "file.pt"
    torch.save({"a.weight": torch.ones(2)}, path)
    if case == "options":
        assert read_structure(str(path), full_open_only=True) is None
        return
    if case == "torchscript":
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    elif case == "config":
        path = tmp_path / "config.json"
        path.write_text(json.dumps({"model_type": "llama"}))
    elif case == "conflict":
        torch.save({"a": torch.ones(2), "a.b": torch.ones(2)}, path)
    else:
        path = tmp_path / "nothing.pt"
    structure = read_structure(str(path))
    assert structure is None or preview_index(structure) is None


def test_a_folder_transformers_would_build_is_not_previewed(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    save_file({"a.weight": torch.ones(2)}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert read_structure(str(tmp_path)) is None
    assert read_structure(str(tmp_path), keys_only=True) is not None


def test_the_preview_imports_neither_torch_nor_textual(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save(small_state(), path)
    code = (
        "import sys\n"
        "from modelbrowse.core.structure import read_structure\n"
        "from modelbrowse.core.structure_index import preview_index\n"
        f"index = preview_index(read_structure({str(path)!r}))\n"
        "print(index.totals().params, len(index))\n"
        "print([m for m in ('torch', 'textual', 'numpy') if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    params, rest = result.stdout.splitlines()
    assert params.split()[0] == str(full_index(path).totals().params)
    assert rest == "[]"
