"""The help screen: every key."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from modelbrowse.widgets.guarded import Guarded

KEYS: list[tuple[str, str]] = [
    ("↑ ↓  j k", "move the cursor"),
    ("→ ←  l h", "expand / collapse (on a leaf: go to the parent)"),
    ("enter  space", "toggle the node"),
    ("g  G  home  end", "first / last line"),
    ("shift+↑ shift+↓", "previous / next sibling"),
    ("shift+space", "open everything below (up to 2,000 lines) / close it all"),
    (":", "go to a path (features.0.weight, classifier[6])"),
    ("/", "filter by path or class name; escape clears it"),
    ("n  N", "next / previous filter match"),
    ("*  m", "select by pattern (features.*, re:..., cls:Linear, all-linear); f i e act on all"),
    ("Y", "copy the selection as a PEFT target_modules list"),
    ("s", "torchinfo summary for the example input (--input-shape)"),
    ("f", "freeze / unfreeze the subtree or parameter (requires_grad)"),
    ("i", "re-initialise: choose a scheme and a seed"),
    ("e", "replace the module: edit its constructor call, e.g. nn.Linear(4096, 10)"),
    ("d", "delete the module (puts nn.Identity() in its place)"),
    ("a", "insert after it in a Sequential / ModuleList, else add a named child"),
    ("u  ctrl+r", "undo / redo"),
    ("L", "the edit log, in words and as PyTorch code"),
    ("w", "write the weights (.pt or .safetensors) and the recipe beside them"),
    ("?", "this help"),
    ("ctrl+p", "command palette: every action by name, with its key"),
    ("q  ctrl+q  ctrl+c", "quit (asks when edits are unsaved; ctrl+c twice quits at once)"),
]


class HelpScreen(Guarded, ModalScreen[None]):
    """A list of the keys; any of escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), show_header=False)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(Text(key), Text(what))
        with VerticalScroll(id="help-body"):
            yield Static(Text("Keys", style="bold underline"))
            yield Static(table)
            yield Static(
                Text(
                    "Markers: ◆ parameter  ● buffer  ○ non-persistent buffer  "
                    "⚠ unregistered tensor. 'shared' marks objects reachable under several paths.",
                    style="dim",
                )
            )
            yield Static(Text("escape closes", style="italic dim"))

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
