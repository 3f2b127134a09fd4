"""Edits kept when a session is stopped: the file, what the next session finds, the replay."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from modelbrowse.core.edits.base import Edit
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.edits.modules import Replace
from modelbrowse.core.recipe import read_recipe, replay_recipe
from modelbrowse.core.recovery import (
    KEEP_AT_MOST,
    as_made,
    keep_unsaved,
    kept_for,
    mark_announced,
    recovery_dir,
)
from modelbrowse.core.saving.weights import read_weights
from modelbrowse.core.sources.base import Source, resolve_source

SEED = 11


def edited_history() -> tuple[Source, EditHistory]:
    """resnet18 with layer1 frozen and a 7-class head, as unsaved edits."""
    source = resolve_source("resnet18", {}, None)
    history = EditHistory(source.build_real(SEED))
    history.apply(SetTrainable("layer1", trainable=False))
    history.apply(Replace("fc", "nn.Linear(512, 7)", seed=5))
    return source, history


def test_kept_edits_are_a_recipe_that_rebuilds_the_same_weights(tmp_path: Path) -> None:
    source, history = edited_history()
    path = keep_unsaved(
        source, SEED, list(history.done), history.model, "stopped by SIGHUP", "modelbrowse resnet18"
    )
    assert path.parent == recovery_dir()
    recipe = read_recipe(path)
    assert "weights" not in recipe  # nothing was written
    assert recipe["kept"]["reason"] == "stopped by SIGHUP"
    assert [e["op"] for e in recipe["edits"]] == ["set_trainable", "replace"]

    replay_recipe(path, source, tmp_path / "again.pt")
    again = read_weights(tmp_path / "again.pt")
    state = history.model.state_dict()
    assert again["fc.weight"].shape == (7, 512)
    assert all(torch.equal(again[k], state[k]) for k in state)
    assert "layer1.0.conv1.weight" in read_recipe(tmp_path / "again.pt.recipe.json")["frozen"]


def test_the_next_session_of_the_same_model_finds_them_once() -> None:
    source, history = edited_history()
    path = keep_unsaved(
        source, SEED, list(history.done), history.model, "stopped by SIGTERM",
        "modelbrowse resnet18 --input-shape 1,3,64,64",
    )  # fmt: skip
    other = resolve_source("resnet18", {"num_classes": 10}, None)
    assert kept_for(other) == []  # other arguments: another model

    found = kept_for(resolve_source("ResNet18", {}, None))
    assert [k.path for k in found] == [path]
    text = found[0].announcement()
    assert "2 unsaved edits of resnet18 from a session stopped by SIGTERM at " in text
    assert f"modelbrowse resnet18 --input-shape 1,3,64,64 --recipe {path} reopens them" in text

    mark_announced(path)
    assert kept_for(source) == []
    assert read_recipe(path)["kept"]["announced"] is True  # still there for --recipe


def test_old_kept_files_are_pruned_and_unreadable_ones_skipped() -> None:
    source, history = edited_history()
    folder = recovery_dir()
    folder.mkdir(parents=True)
    (folder / "broken.recipe.json").write_text("{not json")
    oldest = folder / "old.recipe.json"
    oldest.write_text(json.dumps({"kept": {}, "source": {}}))
    os.utime(oldest, (1, 1))
    for _ in range(KEEP_AT_MOST):
        keep_unsaved(source, SEED, list(history.done), history.model, "stopped", "modelbrowse x")
    names = {p.name for p in folder.glob("*.recipe.json")}
    assert len(names) == KEEP_AT_MOST
    assert "old.recipe.json" not in names
    assert len(kept_for(source)) == KEEP_AT_MOST - ("broken.recipe.json" in names)


def test_steps_that_do_not_add_up_leave_the_edits_one_by_one() -> None:
    edits: list[Edit] = [
        SetTrainable("layer1", trainable=False),
        SetTrainable("layer2", trainable=False),
    ]
    assert as_made({"kept": {"steps": [{"records": 3, "selector": "x"}]}}, edits) == edits
    assert as_made({}, edits) == edits
    grouped = as_made({"kept": {"steps": [{"records": 2, "selector": "layer*"}]}}, edits)
    assert len(grouped) == 1 and grouped[0].describe() == "edit 2 modules matching layer*"
