"""The module tree widget on its own, outside the app."""

from __future__ import annotations

import torchvision
from textual.widgets import Tree

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
