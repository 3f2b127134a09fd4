"""A recipe is data: it never decides that code runs, and every field is checked before use."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.recipe import RecipeError, load_edited, read_recipe, save_edited
from modelbrowse.core.recovery import kept_for, recovery_dir
from modelbrowse.core.sources.base import resolve_source
from tests.e2e.test_cli import ROOT
from tests.model_support import submodule
from tests.saving_support import one_line


def recipe(source: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "format": "modelbrowse-recipe",
        "version": 1,
        "source": source,
        "edits": [],
        "frozen": [],
        **more,
    }


def hostile_import(marker: Path) -> dict[str, Any]:
    """The recipe of issue 22: `subprocess.run("touch MARKER", shell=True)`."""
    return {
        "kind": "import",
        "spec": "subprocess:run",
        "kwargs": {"args": repr(f"touch {marker}"), "shell": "True"},
        "weights": None,
        "init_seed": 1,
        "reproducible": True,
    }


def beside(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    """model.pt (a small state dict) with `data` as its recipe."""
    weights = tmp_path / "model.pt"
    torch.save(nn.Linear(2, 3).state_dict(), weights)
    text = data if isinstance(data, str) else json.dumps(data)
    (tmp_path / "model.pt.recipe.json").write_text(text)
    return weights


def test_an_import_path_a_recipe_names_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    weights = beside(tmp_path, recipe(hostile_import(marker)))
    with pytest.raises(RecipeError) as excinfo:
        load_edited(weights)
    assert one_line(excinfo) == (
        "the recipe's source is the import path 'subprocess:run', which a recipe cannot make "
        "run; if you trust that code, pass it: load_edited(path, source='subprocess:run')"
    )
    # Naming another import path is not naming this one.
    with pytest.raises(RecipeError, match="is not the recipe's source 'subprocess:run'"):
        load_edited(weights, source="os:system")
    # The recipe's kind cannot smuggle one in either.
    for kind in ("torchvision", "timm"):
        source = {**hostile_import(marker), "kind": kind}
        beside(tmp_path, recipe(source))
        with pytest.raises(RecipeError, match=f"'subprocess:run' is not a {kind} model"):
            load_edited(weights)
    arch = {"kind": "checkpoint", "spec": str(weights), "arch": hostile_import(marker)}
    beside(tmp_path, recipe(arch))
    with pytest.raises(RecipeError, match="the import path 'subprocess:run'"):
        load_edited(weights)
    assert not marker.exists()


def test_an_import_path_the_caller_supplies_builds(tmp_path: Path, models_file: Path) -> None:
    source = resolve_source(f"{models_file}:WideList", {"n": 2})
    model = source.build_real(0)
    weights = tmp_path / "wide.pt"
    save_edited(model, weights, source, 0, [])
    with pytest.raises(RecipeError, match="pass it: load_edited"):
        load_edited(weights)
    by_spec = load_edited(weights, source=f"{models_file}:WideList")
    cls = type(model)
    by_class = load_edited(weights, source=cls)
    by_factory = load_edited(weights, source=lambda n: cls(n=n))  # the recipe's kwargs
    for loaded in (by_spec, by_class, by_factory):
        assert len(submodule(loaded, "layers", nn.ModuleList)) == 2
        assert torch.equal(
            loaded.get_parameter("layers.0.weight"), model.get_parameter("layers.0.weight")
        )
    with pytest.raises(RecipeError, match=r"not an nn\.Module class"):
        load_edited(weights, source=dict)
    with pytest.raises(RecipeError, match="not Linear"):
        load_edited(weights, source=nn.Linear(1, 1))
    # A zoo model's recipe needs nothing supplied, and takes nothing.
    alexnet = resolve_source("alexnet")
    save_edited(alexnet.build_real(0), tmp_path / "a.pt", alexnet, 0, [])
    with pytest.raises(RecipeError, match="'alexnet' \\(torchvision\\), which it rebuilds"):
        load_edited(tmp_path / "a.pt", source=cls)


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (subprocess.run, (["touch", self.path],))


def test_a_trust_flag_in_a_recipe_is_not_honoured(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"model": _Marker(str(marker))}))
    source = {
        "kind": "checkpoint",
        "spec": str(evil),
        "whole_model": True,
        "checkpoint": {"trust_pickle": True},
    }
    weights = beside(tmp_path, recipe(source))
    with pytest.raises(ModelBrowseError) as excinfo:
        load_edited(weights)
    assert "\n" not in str(excinfo.value)
    assert not marker.exists()


BAD_FIELDS: dict[str, tuple[Any, str]] = {
    "kwargs not text": (
        {"source": {"kind": "torchvision", "spec": "alexnet", "kwargs": {"n": 3}}},
        "'source.kwargs.n' must be a string, not a number",
    ),
    "unknown kind": (
        {"source": {"kind": "pickle", "spec": "x"}},
        "'source.kind' is 'pickle', not one of torchvision, timm, import, checkpoint, huggingface",
    ),
    "unknown source field": (
        {"source": {"kind": "torchvision", "spec": "alexnet", "trust_pickle": True}},
        "'source' has an unknown field 'trust_pickle'",
    ),
    "unknown checkpoint field": (
        {"source": {"kind": "checkpoint", "spec": "/x.pt", "checkpoint": {"exec": "x"}}},
        "'source.checkpoint' has an unknown field 'exec'",
    ),
    "seed as text": (
        {"edits": [{"op": "reinit", "path": "a", "seed": "1"}]},
        "step 1 of the recipe is malformed: 'edits[0].seed' must be an integer, not a string",
    ),
    "unknown argument": (
        {"edits": [{"op": "replace", "path": "", "spec": "nn.Identity()", "allow_root": True}]},
        "step 1 of the recipe is malformed: 'edits[0]' has an unknown field 'allow_root'",
    ),
    "missing argument": (
        {"edits": [{"op": "insert", "path": "a", "spec": "nn.ReLU()"}]},
        "step 1 of the recipe is malformed: 'edits[0].index' is missing",
    ),
    "bool as int": (
        {"edits": [{"op": "insert", "path": "a", "index": True, "spec": "nn.ReLU()"}]},
        "'edits[0].index' must be an integer, not true/false",
    ),
    "huge seed": (
        {"edits": [{"op": "reinit", "path": "a", "seed": 10**30}]},
        "'edits[0].seed' is out of range",
    ),
    "long spec": (
        {"edits": [{"op": "replace", "path": "a", "spec": "x" * 200_000}]},
        "'edits[0].spec' is too long (200,000 characters; at most 100,000)",
    ),
    "frozen not text": ({"frozen": ["a", ["b"]]}, "'frozen[1]' must be a string, not a list"),
    "kept steps": (
        {"kept": {"steps": [{"records": 0}]}},
        "'kept.steps[0].records' is out of range",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_a_malformed_field_is_one_line_naming_it(tmp_path: Path, case: str) -> None:
    change, expected = BAD_FIELDS[case]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({**recipe({"kind": "torchvision", "spec": "alexnet"}), **change}))
    with pytest.raises(RecipeError) as excinfo:
        read_recipe(path)
    assert one_line(excinfo).startswith(f"{path}: ")
    assert expected in one_line(excinfo)


def test_deep_huge_and_large_recipes_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"format": "modelbrowse-recipe", "edits": ' + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(RecipeError, match=f"^{path} is nested too deeply$"):
        read_recipe(path)
    path.write_text('{"format": "modelbrowse-recipe", "version": ' + "9" * 5000 + "}")
    with pytest.raises(RecipeError, match=f"^{path} is not usable JSON: "):
        read_recipe(path)
    # `ast.literal_eval` of these raises MemoryError and RecursionError.
    source = {"kind": "torchvision", "spec": "alexnet", "kwargs": {"x": "-" * 99_990 + "1"}}
    path.write_text(json.dumps(recipe(source)))
    weights = beside(tmp_path, path.read_text())
    with pytest.raises(RecipeError, match="keyword argument 'x' is nested too deeply"):
        load_edited(weights)
    source = {"kind": "torchvision", "spec": "alexnet", "kwargs": {"x": "1+" * 40_000 + "1j"}}
    path.write_text(json.dumps(recipe(source)))
    weights = beside(tmp_path, path.read_text())
    with pytest.raises(RecipeError, match="keyword argument 'x' is nested too deeply"):
        load_edited(weights)
    monkeypatch.setattr("modelbrowse.core.recipe.MAX_BYTES", 100)
    path.write_text(json.dumps(recipe({"kind": "torchvision", "spec": "alexnet"})))
    with pytest.raises(RecipeError, match=f"^{path} is too large for recipe "):
        read_recipe(path)


def test_a_garbage_recovery_file_is_skipped_with_one_line() -> None:
    folder = recovery_dir()
    folder.mkdir(parents=True)
    (folder / "deep.recipe.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "bytes.recipe.json").write_bytes(b"\xff\x00" * 100)
    (folder / "fields.recipe.json").write_text(
        json.dumps(recipe({"kind": "torchvision", "spec": "alexnet"}, kept={"at": 5}))
    )
    skipped: list[str] = []
    assert kept_for(resolve_source("alexnet"), skipped) == []
    assert sorted(skipped) == [
        "skipped bytes.recipe.json in the recovery folder: "
        f"{folder / 'bytes.recipe.json'} is not UTF-8 text",
        "skipped deep.recipe.json in the recovery folder: "
        f"{folder / 'deep.recipe.json'} is nested too deeply",
        "skipped fields.recipe.json in the recovery folder: "
        f"{folder / 'fields.recipe.json'}: 'kept.at' must be a string, not a number",
    ]


def test_the_command_line_refuses_a_recipe_for_another_source(tmp_path: Path) -> None:
    """`--recipe` replays only onto the SOURCE typed on the command line."""
    marker = tmp_path / "marker"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe(hostile_import(marker))))
    result = subprocess.run(
        [sys.executable, "-m", "modelbrowse.tui", "alexnet", "--recipe", str(path), "--output",
         str(tmp_path / "out.pt")],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "modelbrowse: error: the recipe was written for 'subprocess:run' (kind 'import'), "
        "not 'alexnet' (kind 'torchvision')\n"
    )
    assert not marker.exists() and not (tmp_path / "out.pt").exists()
