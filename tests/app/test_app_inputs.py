"""The app's example input: the summary and shape check of a token model, the hint, and the
names of classes from a file the user named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions
from tests.app_support import (
    open_app,
    screen_text,
    squeeze,
    wait_for_notification,
    wait_for_text,
)

SMALL = (80, 24)

NET = """
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(20, 20)

    def forward(self, x):
        return self.fc(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 20)
        self.block = Block()
        self.fc2 = nn.Linear(20, 2)

    def forward(self, x):
        return self.fc2(self.block(self.fc1(x)))
"""


@pytest.fixture
def share_net(tmp_path: Path) -> str:
    """`share.py:Net`, a model from a file whose first layer is `Linear(10, 20)`."""
    path = tmp_path / "share.py"
    path.write_text(NET)
    return f"{path}:Net"


def dialog_paragraph(app: ModelBrowseApp) -> str:
    """The text inside the dialog over the screen (the widest cell of each line), its lines
    joined, for a message it wraps."""
    cells = [max(line.split("│"), key=len) for line in screen_text(app).splitlines()]
    return re.sub(r"\s+", " ", " ".join(cells))


def detail_rows(app: ModelBrowseApp) -> list[str]:
    """The detail pane's lines (the cell right of the tree), spaces folded."""
    rows = [line.split("││") for line in screen_text(app).splitlines()]
    return [squeeze(row[1].strip("│ ")) for row in rows if len(row) == 2]


async def test_a_bert_folder_has_a_summary_and_a_shape_check_for_token_ids(
    bert_folder: Path,
) -> None:
    options = AppOptions(str(bert_folder), input_shape="1,16")
    async with open_app(options, size=SMALL) as (app, pilot):
        # The header's shape check ran the model on integer ids.
        await wait_for_text(pilot, "output {last_hidden_state: (1, 16, 32), pooler_output:")
        assert "shape check unavailable" not in screen_text(app)
        await pilot.press("s")
        screen = await wait_for_text(pilot, "torchinfo summary for input 1,16 (int64)")
        await wait_for_text(pilot, "└─Embedding (word_embeddings)")
        assert "summary failed" not in screen


async def test_a_failed_summary_shows_its_whole_reason_at_80_columns(bert_folder: Path) -> None:
    options = AppOptions(str(bert_folder), input_shape="1,16:float")
    async with open_app(options, size=SMALL) as (app, pilot):
        await pilot.press("s")
        await wait_for_text(pilot, "summary failed")
        shown = dialog_paragraph(app)
        assert (
            "summary failed for input 1,16: RuntimeError: Expected tensor for argument #1 "
            "'indices' to have one of the following scalar types: Long, Int; but got "
            "torch.FloatTensor instead (while checking arguments for embedding)"
        ) in shown
        assert "escape closes" in shown


async def test_the_input_hint_and_the_class_module_come_from_the_users_file(
    share_net: str,
) -> None:
    async with open_app(share_net, size=(120, 40)) as (app, pilot):
        screen = squeeze(screen_text(app))
        assert "shape check unavailable: no example input (--input-shape 1,10)" in screen
        await pilot.press("s")
        await wait_for_notification(
            pilot, "no example input for this model: start with --input-shape 1,10"
        )
        await pilot.press("colon", *"block", "enter")
        await wait_for_text(pilot, "class Block")
        rows = detail_rows(app)
        assert rows[rows.index("class Block") + 1] == "share"  # the module: the file's stem


async def test_an_input_shape_for_the_hint_gives_a_summary(share_net: str) -> None:
    async with open_app(AppOptions(share_net, input_shape="1,10"), size=(120, 40)) as (
        _app,
        pilot,
    ):
        await wait_for_text(pilot, "output (1, 2)")
        await pilot.press("s")
        await wait_for_text(pilot, "torchinfo summary for input 1,10")
        await wait_for_text(pilot, "Linear (fc2) [1, 2] 42")
