"""The app driven by keys (Pilot): what the screen shows after each press."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions
from tests.app_support import open_app, screen_text, settle, squeeze, wait_for, wait_for_text

SIZE = (120, 40)


def tree_text(app: ModelBrowseApp) -> str:
    """The left pane only: the part of each line before the detail pane's border."""
    return squeeze("\n".join(line.split("││")[0] for line in screen_text(app).splitlines()))


def detail_heading(app: ModelBrowseApp) -> str:
    """The first line of the detail pane: the path of the node under the cursor."""
    for line in screen_text(app).splitlines()[2:]:
        cells = [c.strip() for c in line.split("│") if c.strip()]
        if len(cells) >= 2:
            return cells[1].split("  ")[0]
        if len(cells) == 1 and line.rstrip().endswith("│") and line.count("│") >= 3:
            return cells[0]
    return ""


async def test_alexnet_goto_weight_shows_its_properties_and_statistics() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        screen = squeeze(screen_text(app))
        assert "alexnet · AlexNet" in screen
        assert "61.1M params" in screen
        assert "features Sequential 2.5M" in screen
        assert "classifier Sequential 58.6M" in screen
        assert "features.0 " not in screen  # first level only until expanded

        await pilot.press("colon", *"features.0.weight", "enter")
        screen = await wait_for_text(pilot, "statistics exact")
        for expected in (
            "features.0.weight",
            "shape (64, 3, 11, 11)",
            "dtype float32",
            "device cpu",
            "requires_grad True",
            "numel 23,232",
            "kind parameter",
            "mean",
            "std",
            "zeros",
            "histogram",
        ):
            assert expected in screen, expected
        # The ancestors were expanded to reveal the node.
        assert "◆ weight (64, 3, 11, 11)" in screen


async def test_large_tensor_shows_an_estimate_then_exact_statistics() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("colon", *"classifier.1.weight", "enter")
        await pilot.pause()
        first = squeeze(screen_text(app))
        assert "shape (4096, 9216)" in first
        assert "estimate from a sample" in first or "statistics exact" in first
        await wait_for_text(pilot, "statistics exact")


async def test_statistics_of_a_node_left_behind_never_replace_the_current_ones() -> None:
    """j right after landing on a big tensor: its exact values, still computing, are dropped."""
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("colon", *"classifier.1.weight", "enter", "j")
        await wait_for(pilot, lambda: not any(w.group == "stats" for w in app.workers))
        await pilot.pause()
        screen = squeeze(screen_text(app))
        assert "classifier.1.bias" in screen
        assert "numel 4,096" in screen
        assert "statistics exact" in screen
        assert "estimate from a sample" not in screen
        assert "37,748,736" not in screen


async def test_statistics_under_way_when_the_tensor_is_edited_never_show_as_the_new_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Re-initialised with zeros while its exact statistics are computing: only the zeros'
    statistics are ever shown as exact."""
    import threading

    from modelbrowse.core import stats
    from modelbrowse.tui.screens.dialogs import ReinitDialog

    # The first exact computation pauses after its first slice until the edit is made, so the
    # edit lands while it is under way however quick the machine.
    edited = threading.Event()
    compute_stats = stats.compute_stats

    def paused_after_a_slice(tensor: object, cancelled: object = None) -> object:
        slices = 0

        def wanted() -> bool:
            nonlocal slices
            slices += 1
            if slices == 2:
                edited.wait(30)
            return cancelled() if callable(cancelled) else False

        return compute_stats(tensor, cancelled=wanted)  # type: ignore[arg-type]

    monkeypatch.setattr(stats, "compute_stats", paused_after_a_slice)
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("colon", *"classifier.1.weight", "enter")
        await wait_for_text(pilot, "estimate from a sample")
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, ReinitDialog))
        assert isinstance(app.screen, ReinitDialog)
        # reset_parameters is greyed for a tensor: the cursor starts on the first scheme
        await pilot.press(*["down"] * (app.screen.schemes.index("zeros") - 1), "enter")
        edited.set()
        seen_exact = False
        for _ in range(600):
            screen = squeeze(screen_text(app))
            if "statistics exact" in screen:
                assert "zeros 100.00%" in screen, screen
                seen_exact = True
                if "with zeros" in screen:
                    break
            await pilot.pause(0.05)
        assert seen_exact
        assert "zeros 100.00%" in squeeze(screen_text(app))


async def test_after_a_held_key_the_pane_shows_where_the_cursor_rests() -> None:
    """Presses in quick succession defer the pane; it follows the cursor once it rests."""
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("j", "l", "j", "j", "j")  # features, expanded, down to features.2
        await wait_for(pilot, lambda: detail_heading(app) == "features.2")
        await settle(pilot)  # nothing deferred is left to replace it
        assert detail_heading(app) == "features.2"
        assert "MaxPool2d" in squeeze(screen_text(app))


async def test_goto_unknown_path_is_an_inline_error_and_nothing_moves() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("colon", *"classifier.9", "enter")
        screen = await wait_for_text(pilot, "no such path")
        assert "no such path: 'classifier.9'" in screen
        assert "classifier has: 0, 1, 2, 3, 4, 5, 6" in screen
        assert detail_heading(app) == "AlexNet"
        await pilot.press("escape")
        await pilot.pause()
        assert "no such path" not in squeeze(screen_text(app))


async def test_keys_move_expand_and_collapse() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("j")
        await wait_for(pilot, lambda: detail_heading(app) == "features")
        await pilot.press("l")  # expand
        await wait_for_text(pilot, "0 Conv2d 23.3K")
        await pilot.press("l")  # on an expanded node: into its first child
        await wait_for(pilot, lambda: detail_heading(app) == "features.0")
        await pilot.press("h")  # a collapsed node: to its parent
        await wait_for(pilot, lambda: detail_heading(app) == "features")
        await pilot.press("h")  # collapse
        await pilot.pause()
        assert "0 Conv2d 23.3K" not in squeeze(screen_text(app))
        await pilot.press("enter")  # toggles
        await wait_for_text(pilot, "0 Conv2d 23.3K")
        await pilot.press("k")
        await wait_for(pilot, lambda: detail_heading(app) == "AlexNet")
        await pilot.press("down", "down")
        await wait_for(pilot, lambda: detail_heading(app) == "features.0")
        await pilot.press("left")
        await wait_for(pilot, lambda: detail_heading(app) == "features")


async def test_filter_shows_matches_with_ancestors_and_escape_clears() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("slash", *"conv", "enter")
        screen = await wait_for_text(pilot, "5 matches")
        assert "features Sequential" in screen
        tree = tree_text(app)
        assert tree.count("Conv2d") == 5
        assert "Linear" not in tree
        assert "classifier" not in tree
        # The cursor starts on the first match.
        await wait_for(pilot, lambda: detail_heading(app) == "features.0")
        await pilot.press("n")
        await wait_for(pilot, lambda: detail_heading(app) == "features.3")
        await pilot.press("n")
        await wait_for(pilot, lambda: detail_heading(app) == "features.6")
        await pilot.press("N")
        await wait_for(pilot, lambda: detail_heading(app) == "features.3")
        await pilot.press("N", "N")  # wraps around to the last match
        await wait_for(pilot, lambda: detail_heading(app) == "features.10")
        await pilot.press("escape")
        screen = await wait_for_text(pilot, "classifier Sequential 58.6M")
        assert "matches" not in screen
        assert detail_heading(app) == "features.10"  # the cursor stays where it was


async def test_colon_and_slash_inside_the_prompt_are_text() -> None:
    async with open_app("alexnet", size=SIZE) as (_app, pilot):
        await pilot.press("slash", *"a/b:c")
        screen = await wait_for_text(pilot, "a/b:c")
        assert "go to a path" not in screen
        await pilot.press("enter")
        await wait_for_text(pilot, "filter 'a/b:c': 0 matches")


async def test_help_lists_the_keys_and_q_quits() -> None:
    async with open_app("alexnet", size=SIZE) as (app, pilot):
        await pilot.press("question_mark")
        screen = await wait_for_text(pilot, "go to a path")
        assert "filter by path or class name" in screen
        assert "torchinfo summary" in screen
        assert "f freeze / unfreeze" in screen and ": go to a path" in screen
        assert "u ^r undo / redo" in screen and "remapped" not in screen
        await pilot.press("escape")
        await pilot.pause()
        assert "go to a path" not in squeeze(screen_text(app))
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


def footer(app: ModelBrowseApp) -> str:
    return squeeze(screen_text(app).splitlines()[-1])


async def test_the_footer_keys_give_way_to_a_dialog_and_follow_what_is_enabled() -> None:
    from modelbrowse.widgets.key_footer import FooterEntry, KeyFooter

    async with open_app("alexnet", size=SIZE) as (app, pilot):
        assert "e Replace u Undo" in footer(app)
        await pilot.press("j", "j", "e")
        await wait_for_text(pilot, "replace avgpool")
        assert "Replace" not in footer(app) and "^p palette" in footer(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: "e Replace u Undo" in footer(app))

        def freeze_key_enabled() -> bool:
            # Typed here: the app's mixins declare `query_one` as Any.
            entry: FooterEntry | None = app.query_one(KeyFooter).entry("freeze")
            assert entry is not None
            return entry.enabled

        assert freeze_key_enabled()
        app.session.saving = True  # what a save under way does: the changing keys grey out
        app.refresh_bindings()
        await wait_for(pilot, lambda: not freeze_key_enabled())
        app.session.saving = False
        app.refresh_bindings()
        await wait_for(pilot, freeze_key_enabled)


async def test_a_click_on_a_footer_key_presses_it_and_a_narrow_footer_keeps_the_palette_key() -> (
    None
):
    from textual.command import CommandPalette

    from modelbrowse.widgets.key_footer import KeyFooter

    async with open_app("alexnet", size=SIZE) as (app, pilot):
        line = screen_text(app).splitlines()[-1]
        await pilot.click(KeyFooter, offset=(line.index("Help"), 0))
        await wait_for_text(pilot, "Keys")
        await pilot.press("escape")
        await wait_for(pilot, lambda: "? Help" in footer(app))
        await pilot.click(KeyFooter, offset=(line.index("▏") - 2, 0))  # between the keys
        await pilot.pause()
        assert "? Help" in footer(app)  # nothing opened over the screen

        await pilot.resize_terminal(60, 30)
        await wait_for(pilot, lambda: footer(app).rstrip().endswith("▏^p palette"))
        assert footer(app).strip().startswith("q Quit : Go to")
        line = screen_text(app).splitlines()[-1]
        await pilot.click(KeyFooter, offset=(line.index("palette"), 0))
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))


async def test_summary_shows_torchinfo_table() -> None:
    async with open_app("alexnet", size=SIZE) as (_app, pilot):
        await pilot.press("s")
        screen = await wait_for_text(pilot, "AlexNet (AlexNet) [1, 1000]")
        assert "input 1,3,224,224" in screen
        assert "features.0" in screen or "Conv2d (0)" in screen
        await pilot.press("end")
        await wait_for_text(pilot, "Total params: 61,100,840")


async def test_summary_with_a_bad_input_shape_is_an_inline_error() -> None:
    async with open_app(AppOptions("alexnet", input_shape="1,5,224,224"), size=SIZE) as (
        app,
        pilot,
    ):
        await pilot.press("s")
        screen = await wait_for_text(pilot, "summary failed")
        assert "1,5,224,224" in screen
        assert app.is_running


@pytest.fixture
def shared_source(models_file: Path) -> str:
    return f"{models_file}:SharedNet"


async def test_shared_module_and_tied_weight_appear_under_every_path(shared_source: str) -> None:
    async with open_app(shared_source, size=SIZE) as (app, pilot):
        screen = squeeze(screen_text(app))
        # 80 embed + 72 linear: the tied head weight is not counted twice.
        assert "152 params" in screen
        assert "encoder Linear 72 shared" in screen

        await pilot.press("colon", *"decoder.proj", "enter")
        screen = await wait_for_text(pilot, "shared with")
        assert "decoder.proj" in screen
        assert "shared with encoder" in screen

        await pilot.press("colon", *"head.weight", "enter")
        screen = await wait_for_text(pilot, "shared with embed.weight")
        assert "shape (10, 8)" in screen


async def test_buffers_and_unregistered_tensor_are_marked(shared_source: str) -> None:
    async with open_app(shared_source, size=SIZE) as (app, pilot):
        screen = squeeze(screen_text(app))
        assert "● scale (8,)" in screen
        assert "○ cache (4,)" in screen
        assert "⚠ mask (3, 3) 9 not registered" in screen

        await pilot.press("colon", *"mask", "enter")
        screen = await wait_for_text(pilot, "kind unregistered tensor")
        assert "not in state_dict()" in screen
        await pilot.press("colon", *"cache", "enter")
        screen = await wait_for_text(pilot, "kind non-persistent buffer")
        assert "not saved in state_dict()" in screen


async def test_a_buffer_that_is_also_a_plain_attribute_counts_in_the_totals(
    models_file: Path,
) -> None:
    async with open_app(f"{models_file}:BufferAlias", size=SIZE) as (_app, pilot):
        screen = await wait_for_text(pilot, "subtree totals")
        assert "buffers 4 " in screen  # as sum(b.numel() for b in model.buffers())
        assert "size 20 B" in screen
        assert "⚠ tensor (1,) 1 not registered shared" in screen

        await pilot.press("colon", *"tensor", "enter")
        screen = await wait_for_text(pilot, "kind unregistered tensor")
        assert "shared with buffer" in screen
        assert "⚠ a plain tensor attribute, the same tensor as │\n" in screen
        assert "│ buffer: .to()/.cuda() move that one" in screen


async def test_unknown_model_exits_with_status_2_and_one_line() -> None:
    app = ModelBrowseApp(AppOptions("alexnett"))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.error_message is not None)
    assert app.return_code == 2
    assert app.error_message == "unknown model 'alexnett' (did you mean: alexnet?)"


async def test_long_module_lists_are_paged(models_file: Path) -> None:
    async with open_app(f"{models_file}:WideList", size=SIZE) as (app, pilot):
        await pilot.press("j", "l")
        screen = await wait_for_text(pilot, "layers[0:100] 100 modules")
        assert "layers[200:250] 50 modules" in screen
        assert "0 Linear" not in screen
        await pilot.press("colon", *"layers.150.weight", "enter")
        await wait_for(pilot, lambda: detail_heading(app) == "layers.150.weight")
        screen = squeeze(screen_text(app))
        assert "150 Linear" in screen
