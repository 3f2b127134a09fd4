"""The detail pane's text for a module, rendered outside the app."""

from __future__ import annotations

import re

from rich.console import Console
from torch import nn

from modelbrowse.core.index import NodeIndex
from modelbrowse.widgets.detail_pane import module_renderable


def children_row(model: nn.Module, path: str) -> str:
    index = NodeIndex(model)
    console = Console(width=80, record=True)
    console.print(module_renderable(index, index.node(path)))
    text = console.export_text()
    found = re.search(r"^children\s+(.*?)\s*$", text, re.MULTILINE)
    assert found is not None, text
    return found.group(1)


def test_the_children_row_counts_in_words() -> None:
    model = nn.Sequential(nn.Sequential(nn.ReLU()), nn.Linear(2, 2), nn.ReLU())
    assert children_row(model, "") == "3 modules"
    assert children_row(model, "0") == "1 module"
    assert children_row(model, "1") == "0 modules"
