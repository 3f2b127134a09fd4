"""Freezing reaches BatchNorm layers: the app asks whether their running statistics stop too."""

from __future__ import annotations

import torch
from torch import nn

from modelbrowse.core.norm_stats import stats_frozen
from modelbrowse.tui.options import AppOptions
from tests.app.test_app_edits import SIZE, goto
from tests.app_support import open_app, screen_text, squeeze, wait_for, wait_for_text


def batch_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


async def test_freeze_asks_about_running_statistics() -> None:
    async with open_app("resnet18", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model

        await goto(pilot, "layer1")
        await pilot.press("f")
        screen = await wait_for_text(pilot, "freeze layer1: 4 BatchNorm layers inside")
        assert "weights only: BatchNorm running statistics still update" in screen
        await pilot.press("escape")
        await wait_for_text(pilot, "nothing changed")
        assert all(p.requires_grad for p in model.parameters())

        await pilot.press("f")
        await wait_for_text(pilot, "BatchNorm layers inside")
        await pilot.press("2")
        await wait_for_text(pilot, "freeze layer1 and its BatchNorm running statistics")
        assert [stats_frozen(m) for m in batch_norms(model)] == [False] + [True] * 4 + [False] * 15
        assert not any(p.requires_grad for p in model.get_submodule("layer1").parameters())

        await goto(pilot, "layer1.0.bn1")
        await wait_for_text(pilot, "running stats frozen: kept in eval mode")
        model.train()
        before = model.get_buffer("layer1.0.bn1.running_mean").clone()
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32))
        assert torch.equal(model.get_buffer("layer1.0.bn1.running_mean"), before)

        await pilot.press("L")  # the code a training script can use does the same
        await wait_for_text(pilot, "register_forward_pre_hook(keep_eval)")
        await pilot.press("escape")

        await pilot.press("u")
        await wait_for_text(pilot, "running stats updated in training")
        assert not any(stats_frozen(m) for m in batch_norms(model))

        await goto(pilot, "layer2")  # the first answer freezes the weights only
        await pilot.press("f")
        await wait_for_text(pilot, "freeze layer2: 5 BatchNorm layers inside")
        await pilot.press("enter")
        await wait_for_text(pilot, "freeze layer2 ")
        assert not any(p.requires_grad for p in model.get_submodule("layer2").parameters())
        assert not any(stats_frozen(m) for m in batch_norms(model))


async def test_a_selection_freezes_and_unfreezes_the_statistics() -> None:
    async with open_app("resnet18", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model
        await pilot.press("asterisk", *"cls:BatchNorm2d", "enter")
        await pilot.press("f")
        await wait_for_text(pilot, "freeze 20 modules matching cls:BatchNorm2d: 20 BatchNorm")
        await pilot.press("2")
        await wait_for_text(pilot, "freeze weights and running statistics of 20 modules")
        assert all(stats_frozen(m) for m in batch_norms(model))
        assert model.get_parameter("conv1.weight").requires_grad

        await pilot.press("f")  # all frozen: f unfreezes, and lets the statistics go
        await wait_for(pilot, lambda: "unfreeze weights and running" in squeeze(screen_text(app)))
        assert not any(stats_frozen(m) for m in batch_norms(model))
        assert all(p.requires_grad for p in model.parameters())


async def test_no_question_without_batchnorm() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await goto(pilot, "features")
        await pilot.press("f")
        await wait_for_text(pilot, "features Sequential 2.5M frozen")
        assert "BatchNorm" not in screen_text(app)


async def test_batchnorm_without_weights_freezes_and_lets_go_of_its_statistics() -> None:
    async with open_app(
        AppOptions("torch.nn:BatchNorm1d", kw=["num_features=4", "affine=False"]), size=SIZE
    ) as (app, pilot):
        assert app.session.history is not None
        norm = app.session.history.model
        await pilot.press("f")  # nothing to ask: only the statistics can be frozen
        await wait_for_text(pilot, "freeze the whole model and its BatchNorm running statistics")
        assert stats_frozen(norm)
        await pilot.press("f")
        await wait_for_text(pilot, "unfreeze the whole model and its BatchNorm running statistics")
        assert not stats_frozen(norm)
