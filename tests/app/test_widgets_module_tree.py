"""The module tree widget on its own, outside the app."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torchvision
from rich.segment import Segment
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import Tree
from textual.widgets.tree import TreeNode
from torch import nn

from modelbrowse.core.index import NodeIndex
from modelbrowse.widgets.module_tree import ModuleTree, TreeEntry


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
    """A module tree alone on a screen of 30 columns by 20 rows, framed as in the app."""

    CSS = "ModuleTree { border: round $primary; }"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def compose(self) -> ComposeResult:
        yield ModuleTree()

    def on_mount(self) -> None:
        tree = self.query_one(ModuleTree)
        tree.load(NodeIndex(self.model))
        tree.focus()


async def test_each_frame_is_the_frame_drawn_afresh() -> None:
    """Rows and the scrollbar's thumb are reused from earlier frames where what they show did
    not change: through scrolls, hover, focus, labels, and lines added, removed, expanded and
    collapsed, each frame must equal the tree and bar drawn from nothing."""
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
        added: list[TreeNode[TreeEntry]] = []
        hovered: list[int] = []

        def last_child_shown() -> TreeNode[TreeEntry]:
            top = int(tree.scroll_y)
            lines = tree._tree_lines[top : top + tree.size.height]
            return next(line.node for line in lines if line.last and len(line.path) > 2)

        def add_beside_last_child_shown() -> None:
            parent = last_child_shown().parent
            assert parent is not None
            added.append(parent.add_leaf("added"))

        def cursor_block() -> TreeNode[TreeEntry]:
            node = tree.cursor_node
            assert node is not None and node.parent is not None
            return node if node.parent is tree.root else node.parent

        changes: dict[int, Callable[[], object]] = {
            20: lambda: pilot.hover(ModuleTree, offset=(8, 5)),
            21: lambda: hovered.append(tree.hover_line),
            25: lambda: pilot.hover(ModuleTree, offset=(8, 9)),
            40: add_beside_last_child_shown,  # └─ to ├─
            45: lambda: cursor_block().set_label("relabelled"),
            50: lambda: added.pop().remove(),
            60: lambda: app.set_focus(None),
            65: lambda: app.set_focus(tree),
            100: lambda: cursor_block().collapse(),  # lines below move up under the cursor
            110: lambda: tree.root.children[6].expand(),
        }

        def drawn() -> tuple[list[list[Segment]], list[list[Segment]]]:
            rows = tree.render_lines(Region(0, 0, *tree.outer_size))
            return [list(s) for s in rows], [list(s) for s in bar.render_lines(bar.size.region)]

        thumbs = set()
        for press in range(130):
            if press in changes:
                result = changes[press]()
                if inspect.isawaitable(result):
                    await result
            tree.action_cursor_up() if press % 7 == 6 else tree.action_cursor_down()
            await pilot.pause()
            rows, thumb = drawn()
            tree.forget_rendering()  # drawn afresh
            tree.refresh()
            bar.refresh()
            assert drawn() == (rows, thumb), f"a stale row or thumb after press {press}"
            assert bar.position == bar.validate_position(tree.scroll_y)
            thumbs.add(repr(thumb))
        assert tree.scroll_y > 70 and len(thumbs) > 10  # it scrolled and the thumb moved
        assert hovered[0] >= 0  # the mouse was over a line
