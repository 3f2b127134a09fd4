"""Editing from the keyboard (Pilot): the screen after each edit, undo, the log, quitting."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from textual.pilot import Pilot
from textual.widgets.tree import TreeNode

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.widgets.module_tree import ModuleTree, TreeEntry
from tests.app_support import (
    open_app,
    paste,
    screen_text,
    squeeze,
    wait_for,
    wait_for_text,
)

SIZE = (130, 40)


async def goto(pilot: Pilot[None], path: str) -> None:
    """`:path` enter, then wait until the detail pane shows that path."""
    await pilot.press("colon", *path, "enter")
    await wait_for(pilot, lambda: f"│ {path} │" in squeeze(screen_text(pilot.app)))


async def replace_with(pilot: Pilot[None], spec: str) -> None:
    await pilot.press("e")
    await wait_for(pilot, lambda: "replace " in squeeze(screen_text(pilot.app)))
    await pilot.press("ctrl+a", "ctrl+k")
    await paste(pilot, spec)
    await pilot.press("enter")
    await pilot.pause()


def snapshot(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], list[bool]]:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, [p.requires_grad for p in model.parameters()]


async def test_done_means_on_alexnet() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await wait_for_text(pilot, "output (1, 1000)")
        assert app.session.history is not None
        original_state, original_flags = snapshot(app.session.history.model)
        original_head = app.session.history.model.get_submodule("classifier.6")

        await goto(pilot, "classifier.6")
        await pilot.press("e")
        screen = await wait_for_text(pilot, "replace classifier.6")
        assert "nn.Linear(in_features=4096, out_features=1000, bias=True)" in screen
        await pilot.press("ctrl+a", "ctrl+k")
        await paste(pilot, "nn.Linear(4096, 10)")
        await pilot.press("enter")
        await wait_for_text(pilot, "output (1, 10)")

        await goto(pilot, "features")
        await pilot.press("f")
        await wait_for_text(pilot, "features Sequential 2.5M frozen")

        await goto(pilot, "classifier.6")
        await pilot.press("i")
        await wait_for_text(pilot, "xavier_uniform")
        await pilot.press("down", "enter")
        screen = await wait_for_text(pilot, "with xavier_uniform (seed")
        assert "57.0M params (54.6M trainable, 2.5M frozen)" in screen
        assert "3 unsaved edits" in screen
        assert "output (1, 10)" in screen

        await pilot.press("L")
        screen = await wait_for_text(pilot, "Edit log: 3 edits")
        assert "model.classifier[6] = nn.Linear(4096, 10)" in screen
        assert "model.features.requires_grad_(False)" in screen
        assert "nn.init.xavier_uniform_(model.classifier[6].weight)" in screen
        edited_state, edited_flags = snapshot(app.session.history.model)
        code = app.session.history.code()
        await pilot.press("escape")

        # The log's code performs the same edits on a freshly built model, bit for bit.
        fresh = torchvision.models.alexnet()
        fresh.load_state_dict(original_state)
        exec(code, {"model": fresh})
        assert fresh.state_dict().keys() == edited_state.keys()
        assert all(torch.equal(fresh.state_dict()[k], v) for k, v in edited_state.items())
        assert [p.requires_grad for p in fresh.parameters()] == edited_flags

        await pilot.press("u", "u", "u")
        screen = await wait_for_text(pilot, "undid: replace classifier.6")
        assert "61.1M params (61.1M trainable, 0 frozen)" in screen
        assert "unsaved" not in screen
        await wait_for_text(pilot, "output (1, 1000)")
        state, flags = snapshot(app.session.history.model)
        assert all(torch.equal(original_state[k], v) for k, v in state.items())
        assert flags == original_flags
        assert app.session.history.model.get_submodule("classifier.6") is original_head

        await pilot.press("ctrl+r")
        screen = await wait_for_text(pilot, "redid: replace classifier.6")
        assert "1 unsaved edit" in screen


async def test_bad_replace_spec_is_an_inline_error_and_nothing_changes() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await goto(pilot, "classifier.6")
        for spec, message in [
            ("__import__('os').system('true')", "only torch.nn classes can be called"),
            ("nn.Linearr(4096, 10)", "'Linearr' is not a torch.nn module class"),
            ("nn.Linear(4096, x)", "only literal arguments are allowed"),
            ("nn.Linear('a', 10)", "nn.Linear: TypeError"),
            ("nn.Linear(4096,", "not valid Python"),
        ]:
            await replace_with(pilot, spec)
            screen = await wait_for_text(pilot, message)
            assert "replace classifier.6" in screen  # the dialog stays open
            await pilot.press("escape")
            await pilot.pause()
        screen = squeeze(screen_text(app))
        assert "61.1M params" in screen
        assert "unsaved" not in screen
        assert app.session.history is not None and not app.session.history.done


async def test_replace_that_breaks_the_forward_is_kept_and_marked() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await goto(pilot, "classifier.4")
        await replace_with(pilot, "nn.Linear(2048, 4096)")
        screen = await wait_for_text(pilot, "shape check failed")
        assert "classifier.4: expected 2048 input features, got 4096" in screen
        await pilot.press("u")
        await wait_for_text(pilot, "output (1, 1000)")
        assert "shape check failed" not in squeeze(screen_text(app))


async def test_delete_and_insert_renumber_and_undo() -> None:
    async with open_app("alexnet", size=SIZE) as (_app, pilot):
        await goto(pilot, "classifier.6")
        await pilot.press("d")
        screen = await wait_for_text(pilot, "delete classifier.6 (now nn.Identity())")
        assert "6 Identity 0" in screen
        assert "output (1, 4096)" in await wait_for_text(pilot, "output (1, 4096)")

        await goto(pilot, "features.0")
        await pilot.press("a")
        await wait_for_text(pilot, "● after features.0, in features")
        await paste(pilot, "nn.BatchNorm2d(64)")
        await pilot.press("enter")
        screen = await wait_for_text(pilot, "insert nn.BatchNorm2d(64) into features at 1")
        assert "1 BatchNorm2d 128" in screen
        assert "2 ReLU 0" in screen  # later siblings renumbered
        await pilot.press("u", "u")
        screen = await wait_for_text(pilot, "undid: delete classifier.6")
        assert "BatchNorm2d" not in screen
        assert "61.1M params" in screen


def tree_lines(app: ModelBrowseApp) -> list[tuple[int, str, bool, bool]]:
    """Every line the tree has built, in order: depth, label, expandable, expanded."""
    tree = app.query_one(ModuleTree)
    lines: list[tuple[int, str, bool, bool]] = []

    def walk(node: TreeNode[TreeEntry], depth: int) -> None:
        lines.append((depth, str(node.label), node.allow_expand, node.is_expanded))
        if node.is_expanded:
            for child in node.children:
                walk(child, depth + 1)

    walk(tree.root, 0)
    return lines


async def test_structural_edits_rebuild_only_the_parent_and_match_a_full_reload() -> None:
    """After each edit and undo, the tree reads as if it had been rebuilt from scratch."""
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        tree = app.query_one(ModuleTree)

        async def same_as_full_reload() -> None:
            await pilot.pause()
            shown, cursor = tree_lines(app), tree.cursor_path
            assert app.session.index is not None
            tree.reload(app.session.index)
            await pilot.pause()
            assert tree_lines(app) == shown
            assert tree.cursor_path == cursor

        await goto(pilot, "classifier.1")
        await goto(pilot, "features.1")
        await replace_with(pilot, "nn.Sequential(nn.ReLU(), nn.Dropout())")
        await wait_for_text(pilot, "replace features.1")
        assert (2, "1  Sequential  0", True, False) in tree_lines(app)  # a leaf no more
        await same_as_full_reload()
        await goto(pilot, "classifier.6")
        await pilot.press("d")
        await wait_for_text(pilot, "delete classifier.6")
        await same_as_full_reload()
        await goto(pilot, "features.0")
        await pilot.press("a")
        await wait_for_text(pilot, "● after features.0, in features")
        await paste(pilot, "nn.BatchNorm2d(64)")
        await pilot.press("enter")
        await wait_for_text(pilot, "insert nn.BatchNorm2d(64) into features at 1")
        await same_as_full_reload()
        for _ in range(3):
            await pilot.press("u")
            await wait_for_text(pilot, "undid")
            await same_as_full_reload()
        assert (2, "1  ReLU  0", False, False) in tree_lines(app)


async def test_add_named_child_outside_a_list_asks_for_a_name() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await goto(pilot, "avgpool")
        await pilot.press("home")  # the root: not inside a list
        await wait_for(pilot, lambda: "│ AlexNet │" in squeeze(screen_text(app)))
        await pilot.press("a")
        await wait_for_text(pilot, "add a named child to the root")
        await pilot.press(*"features", "enter")
        await wait_for_text(pilot, "the root already has a child named 'features'")
        await pilot.press(*["backspace"] * len("features"), *"a.b", "enter")
        await wait_for_text(pilot, "'a.b' has a dot: a child's name cannot")
        await pilot.press(*["backspace"] * len("a.b"), *"class", "enter")  # as add_module takes
        await pilot.press(*"nn.ReLU()", "enter")
        screen = await wait_for_text(pilot, "add nn.ReLU() as class")
        assert "1 unsaved edit" in screen
        assert app.session.history is not None
        assert isinstance(getattr(app.session.history.model, "class"), torch.nn.ReLU)


async def test_edits_on_shared_objects_say_what_else_changes(models_file: Path) -> None:
    async with open_app(f"{models_file}:SharedNet", size=SIZE) as (app, pilot):
        await goto(pilot, "head.weight")
        await pilot.press("f")
        screen = await wait_for_text(pilot, "freeze head.weight")
        assert "also changes: embed.weight" in screen
        assert app.session.history is not None
        assert not app.session.history.model.get_parameter("embed.weight").requires_grad
        await goto(pilot, "embed.weight")
        screen = await wait_for_text(pilot, "requires_grad False")

        await goto(pilot, "decoder.proj")
        await replace_with(pilot, "nn.Linear(8, 8, bias=False)")
        screen = await wait_for_text(pilot, "replace decoder.proj")
        assert "also changes: encoder" in screen
        model = app.session.history.model
        assert model.get_submodule("encoder") is model.get_submodule("decoder.proj")


async def test_replacing_or_reinitialising_one_side_of_a_tie_asks_first(
    models_file: Path,
) -> None:
    async with open_app(f"{models_file}:SharedNet", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model

        def tied() -> bool:
            return model.get_parameter("head.weight") is model.get_parameter("embed.weight")

        await goto(pilot, "head")
        await replace_with(pilot, "nn.Linear(8, 10, bias=False)")
        await wait_for_text(pilot, "head shares objects with embed.weight: this unties them.")
        await pilot.press("n")
        await wait_for_text(pilot, "nothing changed")
        assert tied()

        await pilot.press("i")
        await wait_for_text(pilot, "xavier_uniform")
        await pilot.press("down", "enter")
        await wait_for_text(pilot, "head is tied to embed.weight: re-initialising changes both")
        await pilot.press("y")
        await wait_for_text(pilot, "re-initialise head with xavier_uniform")
        assert tied()  # still one tensor, both changed

        await replace_with(pilot, "nn.Linear(8, 10, bias=False)")
        await wait_for_text(pilot, "this unties them. Go on?")
        await pilot.press("y")
        await wait_for_text(pilot, "replace head with nn.Linear(8, 10, bias=False)")
        assert not tied()
        await pilot.press("L")
        screen = await wait_for_text(pilot, "Edit log: 2 edits")
        assert "(head shares objects with embed.weight: this unties them)" in screen
        assert "(head is tied to embed.weight: re-initialising changes" in screen


async def test_quit_with_unsaved_edits_asks_first() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await goto(pilot, "features")
        await pilot.press("f")
        await wait_for_text(pilot, "1 unsaved edit")
        await pilot.press("q")
        await wait_for_text(pilot, "1 unsaved edit will be lost. Quit anyway?")
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running
        await pilot.press("q")
        await wait_for_text(pilot, "Quit anyway?")
        await pilot.press("y")
        await pilot.pause()
    assert app.return_code == 0


async def test_undoing_a_freeze_gives_each_parameter_back_its_own_flag() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        assert app.session.history is not None
        model = app.session.history.model
        await goto(pilot, "classifier.1.bias")
        await pilot.press("f")
        await wait_for_text(pilot, "freeze classifier.1.bias")
        await goto(pilot, "classifier")  # partly frozen: f freezes the rest
        await pilot.press("f")
        await wait_for_text(pilot, "freeze classifier")
        assert not any(p.requires_grad for p in model.get_submodule("classifier").parameters())
        await pilot.press("u")
        await wait_for_text(pilot, "1 unsaved edit")
        classifier = model.get_submodule("classifier")
        flags = {name: p.requires_grad for name, p in classifier.named_parameters()}
        assert flags == {name: name != "1.bias" for name in flags}

        await goto(pilot, "features")  # all trainable
        await pilot.press("f")
        await wait_for_text(pilot, "features Sequential 2.5M frozen")
        await pilot.press("u")
        await wait_for_text(pilot, "1 unsaved edit")
        assert all(p.requires_grad for p in model.get_submodule("features").parameters())
        await pilot.press("u")  # the one bias
        screen = await wait_for_text(pilot, "undid: freeze classifier.1.bias")
        assert all(p.requires_grad for p in model.parameters())
        assert "61.1M params (61.1M trainable, 0 frozen)" in screen
