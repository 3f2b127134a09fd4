"""The module tree widget on its own, outside the app."""

from __future__ import annotations

import torchvision
from rich.segment import Segment
from textual.app import App, ComposeResult
from textual.widgets import Tree
from torch import nn

from modelbrowse.core.index import NodeIndex
from modelbrowse.widgets.module_tree import ModuleTree


def test_each_line_is_measured_as_wide_as_textual_renders_it() -> None:
    tree = ModuleTree()
    tree.index = NodeIndex(torchvision.models.resnet18())
    tree._reset_root()
    lines = [tree.root, *tree.root.children]
    for expanded in tree.root.children[0], tree.root.children[4]:  # conv1's tensors, layer1
        expanded.expand()
        tree._populate(expanded)
        lines += expanded.children
    kinds = {(line.allow_expand, line.is_expanded) for line in lines}
    assert kinds == {(True, True), (True, False), (False, False)}
    assert any("◆" in line.label.plain for line in lines)  # a wide character
    for line in lines:
        assert tree.get_label_width(line) == Tree.get_label_width(tree, line), line.label.plain


class OneTree(App[None]):
    """A module tree alone on a screen of 30 columns by 20 rows."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def compose(self) -> ComposeResult:
        yield ModuleTree()

    def on_mount(self) -> None:
        tree = self.query_one(ModuleTree)
        tree.load(NodeIndex(self.model))
        tree.focus()


async def test_the_scrollbar_thumb_follows_the_cursor_through_a_long_tree() -> None:
    """The bar is repainted only when its thumb moves: each frame must show the thumb where a
    bar drawn afresh puts it."""
    blocks = nn.Sequential(*[nn.Sequential(*[nn.ReLU() for _ in range(20)]) for _ in range(25)])
    app = OneTree(blocks)
    async with app.run_test(size=(30, 20)) as pilot:
        tree = app.query_one(ModuleTree)
        for block in range(25):
            tree_node = tree.tree_node_for(str(block))
            assert tree_node is not None
            tree_node.expand()
        await pilot.pause()
        bar = tree.vertical_scrollbar

        def drawn() -> list[list[Segment]]:
            return [list(strip) for strip in bar.render_lines(bar.size.region)]

        thumbs = set()
        for _ in range(100):
            tree.action_cursor_down()  # as `j` does
            await pilot.pause()
            shown = drawn()
            bar.refresh()  # drawn afresh
            assert drawn() == shown, f"a stale thumb at line {tree.cursor_line}"
            assert bar.position == bar.validate_position(tree.scroll_y)
            thumbs.add(repr(shown))
        assert tree.scroll_y > 70 and len(thumbs) > 10  # it scrolled and the thumb moved
