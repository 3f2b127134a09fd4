"""The app on checkpoint files: what the root shows, weight-only edits, saving, --arch, --diff."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from textual.pilot import Pilot

from modelbrowse.core.recipe import load_edited
from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions
from tests.app_support import (
    open_app,
    screen_text,
    settle,
    squeeze,
    wait_for,
    wait_for_text,
    wait_loaded,
)

SIZE = (130, 40)


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model: torch.nn.Module = torchvision.models.resnet18()
    return model.state_dict()


@pytest.fixture
def training_checkpoint(tmp_path: Path, resnet18_state: dict[str, torch.Tensor]) -> Path:
    model = torchvision.models.resnet18()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    path = tmp_path / "last.ckpt"
    torch.save(
        {
            "epoch": 12,
            "model": {f"module.{k}": v for k, v in resnet18_state.items()},
            "optimizer": optimizer.state_dict(),
            "metrics": {"top1": 0.7123},
        },
        path,
    )
    return path


async def goto(pilot: Pilot[None], path: str) -> None:
    await pilot.press(":", *path, "enter")
    await wait_for(
        pilot,
        lambda: f"{path}\n" in screen_text(pilot.app) or path in squeeze(screen_text(pilot.app)),
    )
    await pilot.pause()


async def test_a_training_checkpoint_shows_its_tree_and_what_else_it_holds(
    training_checkpoint: Path,
) -> None:
    async with open_app(str(training_checkpoint), size=SIZE) as (_app, pilot):
        screen = await wait_for_text(pilot, "epoch 12")
        assert "layer4 Group" in screen
        assert "AdamW optimizer state" in screen
        assert "lr 0.0003" in screen
        assert "top1=0.7123" in screen
        assert "'module.' stripped" in screen
        assert "11.7M params" in screen
        assert "shape check" not in screen  # nothing to run without an architecture
        await goto(pilot, "layer4")
        assert "from the checkpoint's keys" in squeeze(screen_text(pilot.app))


async def test_without_an_architecture_only_weight_edits_apply(
    training_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_app(str(training_checkpoint), size=SIZE) as (app, pilot):
        await goto(pilot, "fc")
        for key in ("f", "e", "a"):
            await pilot.press(key)
            await wait_for(
                pilot,
                lambda: any(
                    "needs the architecture: open the checkpoint with --arch" in n.message
                    for n in app._notifications
                ),
            )
            app.clear_notifications()
        assert app.session.history is not None and app.session.history.unsaved == 0

        await pilot.press("d")
        await wait_for_text(pilot, "delete the keys fc, fc.*")
        await pilot.press("w")
        screen = await wait_for_text(pilot, "write the weights")
        assert "last-edited.ckpt" in screen  # beside the checkpoint, in its format
        await pilot.press("enter")
        await wait_for_text(pilot, "wrote")
    written = tmp_path / "last-edited.ckpt"
    state = torch.load(written, weights_only=True)
    assert "fc.weight" not in state and "fc.bias" not in state
    assert "conv1.weight" in state  # prefix stripped, as shown
    tree = load_edited(written)
    assert set(tree.state_dict()) == set(state)


async def test_overwriting_the_opened_checkpoint_asks_twice(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "weights.pt"
    torch.save(resnet18_state, path)
    async with open_app(str(path), size=SIZE) as (app, pilot):
        await goto(pilot, "fc.bias")
        await pilot.press("d")
        await wait_for_text(pilot, "delete the keys fc.bias")
        await pilot.press("w")
        await wait_for_text(pilot, "write the weights")
        await pilot.press("ctrl+a", "ctrl+k", *str(path), "enter")
        await wait_for_text(pilot, "Replace it?")
        question = getattr(app.screen, "question", "")
        assert question == f"{path} is the checkpoint this model was opened from. Replace it?"
        await pilot.press("y")
        await wait_for_text(pilot, "It cannot be undone.")
        await pilot.press("y")
        await wait_for_text(pilot, "wrote")
    assert "fc.bias" not in torch.load(path, weights_only=True)


async def test_arch_that_does_not_fit_reports_in_the_root_pane(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "r18.pth"
    torch.save(resnet18_state, path)
    app = ModelBrowseApp(AppOptions(str(path), arch="resnet34"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_text(pilot, "resnet34: 122 loaded, 96 missing")
        await wait_loaded(pilot)
        screen = squeeze(screen_text(app))
        assert "load report" in screen
        assert "missing from the checkpoint" in screen
        assert "layer4 Sequential" in screen  # the architecture's tree, not the keys
        loaded = app.session.index.model.state_dict() if app.session.index else {}
        assert torch.equal(loaded["conv1.weight"], resnet18_state["conv1.weight"])


async def test_diff_marks_what_changed_and_is_read_only(
    tmp_path: Path, resnet18_state: dict[str, torch.Tensor]
) -> None:
    base = tmp_path / "base.pt"
    tuned = tmp_path / "tuned.pt"
    torch.save(resnet18_state, base)
    changed = dict(resnet18_state)
    changed["fc.weight"] = changed["fc.weight"] + 0.5
    del changed["fc.bias"]
    torch.save(changed, tuned)
    app = ModelBrowseApp(AppOptions(str(base), diff=str(tuned)))
    async with app.run_test(size=SIZE) as pilot:
        screen = squeeze(await wait_for_text(pilot, "changed, 120 equal"))
        assert "different: 1 only in A, 1 values" in screen
        assert "~ fc Group" in screen
        assert "= layer1 Group" in screen
        await goto(pilot, "fc.weight")
        screen = await wait_for_text(pilot, "values changed: max abs diff 0.5")
        await pilot.press("d")
        await settle(pilot)  # the key is handled, and anything it started is done
        assert "delete" not in squeeze(screen_text(app))
        assert app.session.history is None


async def test_a_torchscript_model_is_browsed_but_not_edited(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    with pytest.warns(FutureWarning):  # torch.jit is deprecated, and still what people have
        torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Linear(3, 4))), path)
    async with open_app(str(path), size=SIZE) as (app, pilot):
        await goto(pilot, "0")
        for key in ("f", "i", "e", "d", "a"):
            await pilot.press(key)
            await wait_for(
                pilot,
                lambda: any(
                    "a TorchScript model is compiled code and cannot be edited" in n.message
                    for n in app._notifications
                ),
            )
            app.clear_notifications()
        assert app.session.index is not None
        assert dict(app.session.index.model.named_parameters())["0.weight"].requires_grad


async def test_opening_a_file_that_differs_from_its_recipe_says_so(tmp_path: Path) -> None:
    from modelbrowse.core.recipe import save_edited
    from modelbrowse.core.saving.hashing import file_sha256
    from modelbrowse.core.sources.base import resolve_source
    from tests.app_support import notifications

    source = resolve_source("alexnet")
    weights = tmp_path / "edited.safetensors"
    save_edited(source.build_real(0), weights, source, 0, [])
    expected = file_sha256(weights)
    data = bytearray(weights.read_bytes())
    data[-1000] ^= 0x01
    weights.write_bytes(bytes(data))

    app = ModelBrowseApp(AppOptions(str(weights)))
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(
            pilot, lambda: "is not the file its recipe describes" in notifications(app), 60
        )
        assert f"the recipe says {expected}" in notifications(app)
        assert "the file differs from its recipe" in squeeze(screen_text(app))
