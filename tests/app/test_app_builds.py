"""An edit's new module is built off the UI thread: keys answer meanwhile, escape cancels with
the model unchanged, and an edit built so is applied, undone and redone as any other."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import torch
from torch import nn

from modelbrowse.core.edits import modules as module_edits
from modelbrowse.core.edits.base import build_seeded
from modelbrowse.core.sources.build_budget import check_cancelled
from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.widgets.module_tree import ModuleTree
from tests.app.test_app_edits import SIZE, goto, replace_with
from tests.app_support import (
    open_app,
    paste,
    screen_text,
    settle,
    squeeze,
    wait_for,
    wait_for_notification,
    wait_for_text,
)
from tests.model_support import submodule


class SlowBuilder:
    """build_seeded that waits (up to a minute) until released, polling for cancellation as
    a real build does between modules; it says whether it saw the cancel and what it built."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.cancelled = False
        self.built: list[nn.Module] = []
        self.real = build_seeded

    def __call__(self, *args: Any) -> nn.Module:
        self.started.set()
        deadline = time.monotonic() + 60
        while not self.release.is_set() and time.monotonic() < deadline:
            try:
                check_cancelled("the slow build")
            except Exception:
                self.cancelled = True
                raise
            time.sleep(0.02)
        module = self.real(*args)
        self.built.append(module)
        return module


@pytest.fixture
def slow(monkeypatch: pytest.MonkeyPatch) -> SlowBuilder:
    builder = SlowBuilder()
    monkeypatch.setattr(module_edits, "build_seeded", builder)
    return builder


def idle(app: ModelBrowseApp) -> bool:
    return not any(w.is_running for w in app.workers if w.group == "build")


async def test_keys_answer_while_building_and_escape_cancels(slow: SlowBuilder) -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model
        head = model.get_submodule("classifier.6")
        before = head.get_parameter("weight").detach().clone()
        await goto(pilot, "classifier.6")
        await replace_with(pilot, "nn.Linear(4096, 16384)")
        await wait_for_text(pilot, "building nn.Linear(4096, 16384)… · escape cancels")
        tree = app.query_one(ModuleTree)
        await pilot.press("k")  # the tree moves while the module is being built
        await wait_for(pilot, lambda: tree.cursor_path == "classifier.5")
        await pilot.press("e")  # another edit waits for this one
        await wait_for_notification(pilot, "is being built: wait, or escape cancels it")
        await pilot.press("escape")
        await wait_for_text(pilot, "nothing changed: the build was cancelled")
        await wait_for(pilot, lambda: idle(app), 30)
        assert slow.cancelled and not slow.built  # the build stopped, nothing was made
        assert model.get_submodule("classifier.6") is head
        assert torch.equal(head.get_parameter("weight"), before)
        assert not app.session.history.done
        assert "unsaved" not in squeeze(screen_text(app))
        await pilot.press("u")
        await wait_for_notification(pilot, "nothing to undo")


async def test_a_build_finished_after_escape_is_dropped(slow: SlowBuilder) -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        head = app.session.history.model.get_submodule("classifier.6")
        await goto(pilot, "classifier.6")
        await replace_with(pilot, "nn.Linear(4096, 10)")
        await wait_for(pilot, slow.started.is_set)
        await pilot.press("escape")
        await wait_for_text(pilot, "the build was cancelled")
        slow.release.set()  # a build past its last check finishes: its module is not used
        await wait_for(pilot, lambda: idle(app), 30)
        await settle(pilot)  # what the finished build sent the app is handled
        assert (
            app.session.history.model.get_submodule("classifier.6") is head
            and not app.session.history.done
        )


async def test_a_large_replace_is_built_then_applied_undone_and_redone() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model
        head = model.get_submodule("classifier.6")
        model.eval()
        await goto(pilot, "classifier.6")
        await replace_with(pilot, "nn.Linear(4096, 16384)")  # 256 MiB of real weights
        await wait_for_text(pilot, "replace classifier.6 with nn.Linear(4096, 16384)", 60)
        new = model.get_submodule("classifier.6")
        assert isinstance(new, nn.Linear) and new.out_features == 16384
        assert not new.training  # a model in eval mode stays in eval mode
        edit = app.session.history.done[-1]
        assert isinstance(edit, module_edits.Replace)
        # The bytes are the seed's: what the recipe's replay builds.
        again = build_seeded(edit.spec, edit.seed, torch.device("cpu"), None)
        assert torch.equal(new.weight, again.get_parameter("weight"))
        weight = new.weight.detach().clone()
        await pilot.press("u")
        await wait_for_text(pilot, "undid: replace classifier.6")
        assert model.get_submodule("classifier.6") is head
        await pilot.press("ctrl+r")
        await wait_for_text(pilot, "redid: replace classifier.6")
        assert model.get_submodule("classifier.6") is new and torch.equal(new.weight, weight)


async def test_a_selection_builds_one_module_per_match(slow: SlowBuilder) -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model
        await pilot.press("m", *"cls:Dropout", "enter", "e")
        await wait_for_text(pilot, "replace 2 modules matching cls:Dropout")
        await paste(pilot, "nn.Dropout(0.25)")
        await pilot.press("enter")
        await wait_for_text(pilot, "building 2 × nn.Dropout(0.25) (1 of 2)… · escape cancels")
        slow.release.set()
        await wait_for_text(pilot, "replace with nn.Dropout(0.25) 2 modules matching cls:Dropout")
        first = submodule(model, "classifier.0", nn.Dropout)
        second = submodule(model, "classifier.3", nn.Dropout)
        assert first is not second and first.p == second.p == 0.25
        assert [first, second] == slow.built  # one module per match, built in the worker
        await pilot.press("u")
        await wait_for_text(pilot, "undid: replace with nn.Dropout(0.25) 2 modules")
        first = submodule(model, "classifier.0", nn.Dropout)
        second = submodule(model, "classifier.3", nn.Dropout)
        assert first.p == second.p == 0.5
