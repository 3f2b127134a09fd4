"""Transplanting a resnet18 checkpoint into a detection model's backbone: the report before,
the values after, undo, the recipe's hash and its replay, and bad sources refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from modelbrowse.core.edits.history import EditHistory
from modelbrowse.core.edits.transplant import (
    PrefixMap,
    Transplant,
    TransplantError,
    best_mapping,
    open_source,
    plan,
)
from modelbrowse.core.recipe import edits_of, load_edited, read_recipe, save_edited
from modelbrowse.core.saving.hashing import file_sha256
from modelbrowse.core.sources.base import resolve_source
from modelbrowse.tui.cli import main
from tests.edit_support import flags, state
from tests.reading.hostile_files import code_running_pt
from tests.saving_support import one_line
from tests.transplant_support import det_model, resnet18_state, write_det, write_resnet18

SUFFIXES = [".safetensors", ".pt"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("resnet18")
    return {suffix: write_resnet18(folder, suffix) for suffix in SUFFIXES}


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_resnet18_backbone_goes_into_faster_rcnn(
    checkpoints: dict[str, Path], suffix: str
) -> None:
    model = det_model()
    source = open_source(str(checkpoints[suffix]))
    mapping = best_mapping(model, "backbone", source)
    assert mapping == PrefixMap("", "backbone.body.")

    report = plan(model, "backbone", source, mapping)
    assert len(report.copied) == 100  # every conv and FrozenBatchNorm tensor of the body
    assert report.bytes == sum(model.state_dict()[d].numel() * 4 for _, d in report.copied)
    assert {"fc.weight", "fc.bias"} <= set(report.unexpected)
    assert all(k.startswith("fc.") or k.endswith("num_batches_tracked") for k in report.unexpected)
    assert report.missing and all(k.startswith("backbone.fpn.") for k in report.missing)
    assert report.mismatched == () and report.cast == ()
    assert report.summary() == "copied 100 tensors (42.7 MiB), 16 missing, 22 unexpected"

    before = state(model)
    frozen = flags(model)
    edit = Transplant.of("backbone", source, mapping)
    history = EditHistory(model)
    history.apply(edit)
    expected = resnet18_state()
    after = model.state_dict()
    for key, target in report.copied:
        assert torch.equal(after[target], expected[key]), target
    assert torch.equal(
        after["backbone.fpn.layer_blocks.0.0.weight"],
        before["backbone.fpn.layer_blocks.0.0.weight"],
    )
    assert flags(model) == frozen  # conv1 and layer1 stay frozen, as the builder left them
    assert "copied 100 tensors" in edit.describe()

    history.undo()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    history.redo()
    assert torch.equal(model.state_dict()["backbone.body.conv1.weight"], expected["conv1.weight"])


def test_shapes_that_differ_are_reported_and_not_copied(tmp_path: Path) -> None:
    torch.manual_seed(1)
    donor = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 5))
    torch.save(donor.state_dict(), tmp_path / "donor.pt")
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 3))
    head = state(model)
    edit = Transplant("", str(tmp_path / "donor.pt"))
    edit.apply(model)
    report = edit.report
    assert report is not None
    assert [d for _, d in report.copied] == ["0.weight", "0.bias"]
    assert [(d, a, b) for _, d, a, b in report.mismatched] == [
        ("1.weight", (5, 8), (3, 8)),
        ("1.bias", (5,), (3,)),
    ]
    assert torch.equal(model.get_parameter("0.weight"), donor.get_parameter("0.weight"))
    assert torch.equal(model.get_parameter("1.weight"), head["1.weight"])
    assert "2 of another shape" in report.summary()


def test_another_dtype_is_cast_and_reported(tmp_path: Path) -> None:
    donor = nn.Linear(3, 2).double()
    torch.save(donor.state_dict(), tmp_path / "donor.pt")
    model = nn.Sequential(nn.Linear(3, 2))
    edit = Transplant("", str(tmp_path / "donor.pt"), source_prefix="", target_prefix="0.")
    edit.apply(model)
    assert edit.report is not None
    assert edit.report.cast == (
        ("0.weight", "float64", "float32"),
        ("0.bias", "float64", "float32"),
    )
    assert model.get_parameter("0.weight").dtype == torch.float32
    assert torch.equal(model.get_parameter("0.weight"), donor.weight.float())


def test_ties_and_identities_are_kept(tmp_path: Path) -> None:
    from tests.fixtures.models import SharedNet

    torch.manual_seed(3)
    torch.save(SharedNet().state_dict(), tmp_path / "shared.pt")
    model = SharedNet()
    objects = {k: id(v) for k, v in model.state_dict(keep_vars=True).items()}
    history = EditHistory(model)
    history.apply(Transplant("", str(tmp_path / "shared.pt")))
    assert model.get_parameter("head.weight") is model.get_parameter("embed.weight")
    assert {k: id(v) for k, v in model.state_dict(keep_vars=True).items()} == objects
    history.undo()
    assert model.get_parameter("head.weight") is model.get_parameter("embed.weight")


def test_a_tied_key_the_file_leaves_out_is_reached_through_its_twin(tmp_path: Path) -> None:
    from tests.fixtures.models import SharedNet

    donor = SharedNet().state_dict()
    del donor["head.weight"]  # as save_pretrained leaves out a tied lm_head
    torch.save(donor, tmp_path / "untied.pt")
    model = SharedNet()
    edit = Transplant("", str(tmp_path / "untied.pt"))
    edit.apply(model)
    assert edit.report is not None
    assert edit.report.missing == ()
    assert torch.equal(model.get_parameter("head.weight"), donor["embed.weight"])


def test_the_recipe_records_the_hash_and_the_replay_checks_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write_det(tmp_path)
    donor = write_resnet18(tmp_path, ".safetensors")
    source = resolve_source("det.py:build")
    model = source.build_real(5)
    edit = Transplant("backbone", str(donor), target_prefix="backbone.body.")
    EditHistory(model).apply(edit)
    save_edited(model, tmp_path / "det-edited.pt", source, 5, [edit])

    recipe = read_recipe(tmp_path / "det-edited.pt.recipe.json")
    assert recipe["edits"] == [
        {
            "op": "transplant",
            "path": "backbone",
            "source": str(donor),
            "sha256": file_sha256(donor),
            "source_prefix": "",
            "target_prefix": "backbone.body.",
        }
    ]
    assert isinstance(edits_of(recipe)[0], Transplant)
    code = "\n".join(edit.as_code())
    assert "load_file(" in code and "copy_(value)" in code

    recipe_file = "det-edited.pt.recipe.json"
    assert main(["det.py:build", "--recipe", recipe_file, "--output", "again.pt"]) == 0
    again = load_edited(tmp_path / "again.pt", source="det.py:build")
    assert torch.equal(
        again.get_parameter("backbone.body.layer4.1.conv2.weight"),
        resnet18_state()["layer4.1.conv2.weight"],
    )
    capsys.readouterr()

    write_resnet18(tmp_path, ".safetensors", seed=8)  # the donor changed since
    assert main(["det.py:build", "--recipe", recipe_file, "--output", "changed.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "changed since the transplant was recorded" in err and "sha256" in err
    assert not (tmp_path / "changed.pt").exists()

    donor.unlink()
    assert main(["det.py:build", "--recipe", recipe_file, "--output", "gone.pt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"no such file or directory: {donor}" in err
    assert not (tmp_path / "gone.pt").exists()
    # The saved weights hold the copied values: loading them needs no donor.
    kept = load_edited(tmp_path / "det-edited.pt", source="det.py:build")
    key = "backbone.body.conv1.weight"
    assert torch.equal(kept.state_dict()[key], again.state_dict()[key])


def test_a_recipe_with_a_malformed_hash_is_refused(tmp_path: Path) -> None:
    record = {"op": "transplant", "path": "", "source": "x.pt", "sha256": "0" * 65}
    recipe = {
        "format": "modelbrowse-recipe",
        "version": 1,
        "source": {"kind": "torchvision", "spec": "alexnet"},
        "edits": [record],
        "frozen": [],
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    from modelbrowse.core.recipe import RecipeError

    with pytest.raises(RecipeError) as excinfo:
        read_recipe(tmp_path / "r.json")
    assert "edits[0].sha256" in one_line(excinfo)


# --- bad sources: one line each, the model unchanged ------------------------------------------


def _refused(model: nn.Module, edit: Transplant) -> str:
    before = state(model)
    with pytest.raises(TransplantError) as excinfo:
        EditHistory(model).apply(edit)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    return one_line(excinfo)


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    message = _refused(det_model(), Transplant("backbone", str(tmp_path / "nope.pt")))
    assert message == f"no such file or directory: {tmp_path / 'nope.pt'}"


def test_a_directory_without_weights_is_one_line(tmp_path: Path) -> None:
    message = _refused(det_model(), Transplant("backbone", str(tmp_path)))
    assert "directory without a model" in message


def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("these are not weights\n" * 10)
    message = _refused(det_model(), Transplant("backbone", str(tmp_path / "notes.pt")))
    assert "notes.pt" in message


def test_a_mapping_that_matches_nothing_is_one_line(checkpoints: dict[str, Path]) -> None:
    edit = Transplant("backbone", str(checkpoints[".pt"]), "", "nothing.", "backbone.body.")
    message = _refused(det_model(), edit)
    assert message.startswith("the mapping 'nothing.' -> 'backbone.body.' matches no tensor")


def test_a_destination_outside_the_subtree_is_one_line(checkpoints: dict[str, Path]) -> None:
    edit = Transplant("backbone", str(checkpoints[".pt"]), "", "", "roi_heads.")
    assert "outside backbone" in _refused(det_model(), edit)


def test_a_pickle_that_runs_code_is_refused_unless_trusted(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = code_running_pt(tmp_path / "evil.pt", marker)
    model = nn.Sequential(nn.Linear(2, 2))
    message = _refused(model, Transplant("", str(path)))
    assert "evil.pt" in message and not marker.exists()


def test_a_folder_is_read_and_hashed_by_its_files(tmp_path: Path) -> None:
    import hashlib

    folder = tmp_path / "donor"
    folder.mkdir()
    file = write_resnet18(folder, ".safetensors")
    source = open_source(str(folder))
    listing = f"{file_sha256(file)}  resnet18.safetensors\n"
    assert source.sha256 == hashlib.sha256(listing.encode()).hexdigest()
    model = det_model()
    edit = Transplant("backbone", str(folder), source.sha256, "", "backbone.body.")
    edit.apply(model)
    assert torch.equal(
        model.get_parameter("backbone.body.layer3.0.conv1.weight"),
        resnet18_state()["layer3.0.conv1.weight"],
    )
