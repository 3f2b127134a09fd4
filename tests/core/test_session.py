"""The session without a screen: the load's states, apply, undo and redo with their lines, the
shape check's result, the selection and saving (no Pilot, no Textual)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.modules import Replace
from modelbrowse.core.edits.reinit import Reinit
from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.saving.names import default_save_name
from modelbrowse.core.session import LoadState, Session, open_model
from modelbrowse.core.session import read_preview as preview_of
from modelbrowse.core.session import session as session_module
from modelbrowse.tui.options import AppOptions


def session_on(spec: str, **options: object) -> Session:
    """A session as the app drives it: opened, materialised where it must be, history started."""
    session = Session(AppOptions(spec, **options))  # type: ignore[arg-type]
    said: list[str] = []
    session.opened(open_model(session.request, session.init_seed, said.append))
    if session.load_state is LoadState.INITIALISING:
        session.materialised(session.build_real())
    if session.load_state is LoadState.READY:
        assert session.start_history() == []
    return session


def state_of(session: Session) -> LoadState:
    """The state now (a check before a call would narrow `session.load_state` for good)."""
    return session.load_state


@pytest.fixture
def shared(models_file: Path) -> Session:
    return session_on(f"{models_file}:SharedNet")


# --- the load ------------------------------------------------------------------------------------


def test_a_model_built_on_meta_is_initialised_then_ready(models_file: Path) -> None:
    session = Session(AppOptions(f"{models_file}:SharedNet", seed=7))
    assert (session.load_state, session.state_label, session.init_seed) == (
        LoadState.READING,
        "loading",
        7,
    )
    said: list[str] = []
    shown = session.opened(session.load(said.append))
    assert shown is None  # no preview was shown
    assert session.load_state is LoadState.INITIALISING and session.materialising
    assert session.state_label == "initialising weights"
    assert session.index is not None and session.index.is_meta
    assert session.begin_materialising() is False  # under way already
    ran: list[str] = []
    session.defer(lambda: ran.append("waited"))
    session.materialised(session.build_real())
    assert state_of(session) is LoadState.READY and not session.index.is_meta
    for action in session.start_history():
        action()
    assert ran == ["waited"] and session.history is not None


def test_torchvision_random_weights_say_so_and_big_models_wait_for_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_module, "EAGER_MATERIALISE_LIMIT", 0)  # as for 100M params
    session = Session(AppOptions("alexnet"))
    session.opened(open_model(session.request, None, print))
    assert session.load_state is LoadState.STRUCTURE
    assert session.state_label == "structure only: values load when needed (61.1M params)"
    assert session.begin_materialising() is True
    assert session.begin_materialising() is False
    assert session.state_label == "initialising weights"
    session.materialised(session.build_real())
    assert session.state_label == "random init"


def test_meta_shows_shapes_and_refuses_edits(models_file: Path) -> None:
    session = session_on(f"{models_file}:SharedNet", meta=True)
    assert session.load_state is LoadState.META
    assert session.state_label == "meta: shapes only, no values"
    assert session.begin_materialising() is False and session.history is None
    refusal = "--meta: the model has no values to edit or write (open it without --meta)"
    assert session.meta_refusal() == refusal and session.edit_refusal() == refusal


def test_a_weight_file_is_previewed_then_opened(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"layer.weight": torch.ones(2, 3), "layer.bias": torch.zeros(2)}, str(path))
    session = Session(AppOptions(str(path)))
    preview = preview_of(session.request)
    assert preview is not None and session.show_preview(preview)
    assert session.previewing and session.state_label == "loading torch: values follow"
    assert session.edit_refusal() == "the model is still loading"
    assert session.show_preview(preview) is False  # once only
    shown = session.opened(open_model(session.request, None, print))
    assert shown is preview and not session.previewing
    assert session.protected_paths() == {path.resolve()}
    assert session.save_name() == str(tmp_path / "w-edited.safetensors")


def test_a_source_that_cannot_open_is_one_line_and_a_failed_state() -> None:
    session = Session(AppOptions("alexnett"))
    with pytest.raises(ModelBrowseError, match="unknown model 'alexnett'"):
        open_model(session.request, None, print)
    session.failed()
    assert session.load_state is LoadState.FAILED and session.state_label == ""


# --- edits ---------------------------------------------------------------------------------------


def test_apply_undo_redo_say_what_they_did(shared: Session) -> None:
    applied = shared.apply(SetTrainable("encoder", False))
    assert applied.message == "freeze encoder · also changes: decoder.proj"
    assert shared.unsaved == 1
    assert shared.index is not None and shared.index.totals("encoder").trainable == 0
    undone = shared.undo()
    assert undone is not None and undone.message == "undid: freeze encoder"
    assert shared.unsaved == 0 and shared.index.totals("encoder").trainable == 72
    redone = shared.redo()
    assert redone is not None and redone.message == "redid: freeze encoder"
    assert shared.undo() is not None and shared.undo() is None and shared.redo() is not None


def test_a_tie_is_asked_about_and_its_note_stays_with_the_session(shared: Session) -> None:
    edit = Replace("head", "nn.Linear(8, 10)")
    question = shared.tie_question(edit)
    assert question == "head shares objects with embed.weight: this unties them"
    applied = shared.apply(edit, note=question)
    said = f"replace head with nn.Linear(8, 10) ({question})"
    assert (applied.message, applied.note) == (said, question)
    assert not hasattr(edit, "tie_note")  # the edit is core's; the note is the session's
    entries, code = shared.log()
    assert entries[0][0] == said and "model.head = " in code
    undone = shared.undo()
    assert undone is not None and undone.message == f"undid: {said}"


def test_an_edit_that_fails_changes_nothing(shared: Session) -> None:
    with pytest.raises(ModelBrowseError, match="unknown scheme 'bogus'"):
        shared.apply(Reinit("embed", "bogus", 0))
    assert shared.history is not None and not shared.history.done and shared.unsaved == 0


def test_a_replace_builds_first_and_a_cancelled_build_is_dropped(shared: Session) -> None:
    edit = Replace("head", "nn.Linear(8, 10)")
    build = shared.begin_build(edit)
    assert build is not None and build.label == "nn.Linear(8, 10)"
    assert shared.edit_refusal() == "nn.Linear(8, 10) is being built: wait, or escape cancels it"
    assert shared.cancel_build() and build.cancelled.is_set()
    assert shared.end_build(build) is False and shared.edit_refusal() is None
    assert shared.cancel_build() is False


# --- the shape check -----------------------------------------------------------------------------


def test_the_shape_check_is_one_result_said_in_the_header() -> None:
    session = session_on("alexnet")
    assert session.shape is None and session.shape_text == "" and not session.shape_failed
    result = session.check_shapes()
    assert result is not None
    session.shape_checked(result)
    assert session.shape_text == "output (1, 1000)" and not session.shape_failed
    session.apply(Replace("classifier.6", "nn.Linear(10, 10)"))
    result = session.check_shapes()
    assert result is not None
    session.shape_checked(result)
    assert session.shape_failed
    expected = "shape check failed: classifier.6: expected 10 input features, got 4096"
    assert session.shape_text == expected


def test_without_an_example_input_the_check_says_so(shared: Session) -> None:
    result = shared.check_shapes()
    assert result is not None and result.ok is None
    shared.shape_checked(result)
    expected = "shape check unavailable: no example input (--input-shape 1,16:long)"
    assert shared.shape_text == expected and not shared.shape_failed


# --- the selection -------------------------------------------------------------------------------


def test_a_selection_stays_armed_inside_and_ends_when_the_cursor_leaves(shared: Session) -> None:
    assert shared.index is not None
    selection = shared.selection.select(shared.index, "cls:Linear", cursor="")
    assert selection.paths == ["encoder", "decoder.proj", "head"]
    assert shared.armed() is selection
    assert shared.selection.moved_to("") is False  # where it was made
    assert shared.selection.moved_to("encoder") is False
    assert shared.selection.moved_to("head.weight") is False  # under a selected module
    assert shared.armed() is selection
    assert shared.selection.moved_to("decoder") is True  # above the selection is outside it
    assert shared.armed() is None and shared.selection.moved_to("mask") is False


def test_a_selection_copies_its_targets_and_waits_for_a_build(shared: Session) -> None:
    assert shared.index is not None
    shared.selection.select(shared.index, "cls:Linear", cursor="")
    targets = "target_modules=['encoder', 'head', 'proj']"
    assert shared.selection.copy_targets(shared.index) == targets
    assert shared.selection.copied == [f"# cls:Linear\n{targets}"]
    assert shared.begin_build(Replace("embed", "nn.Embedding(10, 8)")) is not None
    assert shared.armed() is None  # the edit keys say why nothing starts
    shared.cancel_build()
    assert shared.selection.clear() and not shared.selection.clear()
    assert shared.selection.select(shared.index, "cls:Conv2d", cursor="").paths == []
    assert shared.armed() is None  # nothing matched: nothing armed


# --- saving --------------------------------------------------------------------------------------


def test_save_writes_the_weights_and_the_recipe_and_clears_unsaved(
    shared: Session, tmp_path: Path
) -> None:
    shared.apply(SetTrainable("encoder", False))
    assert shared.save_name() == "sharednet-edited.pt"
    out = tmp_path / "shared.safetensors"
    shared.begin_save()
    seen: list[float] = []
    report = shared.save(out, seen.append)
    shared.saved(report)
    assert out.is_file() and (tmp_path / "shared.safetensors.recipe.json").is_file()
    assert seen and seen[-1] == 1.0
    assert shared.unsaved == 0 and not shared.saving and shared.save_name() == str(out)


@pytest.mark.parametrize(
    ("spec", "kind", "expected"),
    [
        ("alexnet", "torchvision", "alexnet-edited.pt"),
        ("pkg.models:Net", "import", "net-edited.pt"),
        ("models/config.json", "huggingface", "models-edited.pt"),
    ],
)
def test_the_default_save_name_follows_the_source(spec: str, kind: str, expected: str) -> None:
    assert default_save_name(spec, kind) == expected


def test_the_session_imports_neither_torch_nor_textual() -> None:
    code = (
        "import sys, modelbrowse.core.session\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'textual', 'rich')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
