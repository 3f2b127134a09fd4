"""The least a Textual app paints: one line, the header's words, and nothing else.

`python benchmarks/textual_frame.py` is timed in tmux like `modelbrowse alexnet` until the same
words show: the floor under the app's first frame (importing Textual, starting its driver,
parsing its default CSS, one render), which no app built on Textual paints sooner.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Static


class OneLine(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("modelbrowse  alexnet")


if __name__ == "__main__":
    OneLine().run()
