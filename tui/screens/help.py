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

from modelbrowse.core.saving.names import extensions_text
from modelbrowse.widgets.guarded import Guarded

# Each row: the actions whose keys it shows (as bound now, after the user's keymap), keys that
# cannot be remapped, and what they do.
KEYS: list[tuple[tuple[str, ...], str, str]] = [
    (("cursor_down", "cursor_up"), "↑ ↓", "move the cursor"),
    (("expand", "collapse"), "", "expand / collapse (on a leaf: go to the parent)"),
    (("toggle_node",), "space", "toggle the node"),
    (("scroll_home", "scroll_end"), "", "first / last line"),
    ((), "shift+↑ shift+↓", "previous / next sibling"),
    ((), "shift+space", "open everything below (up to 2,000 lines) / close it all"),
    (("goto",), "", "go to a path (features.0.weight, classifier[6])"),
    (("filter",), "", "filter by path or class name; escape clears it"),
    (("next_match", "previous_match"), "", "next / previous filter match"),
    (
        ("select",),
        "",
        "select by pattern (features.*, re:..., cls:Linear, all-linear); "
        "freeze, re-init and replace act on all until the cursor leaves it; escape clears it",
    ),
    (("copy_targets",), "", "copy the selection as a PEFT target_modules list"),
    (("summary",), "", "torchinfo summary for the example input (--input-shape)"),
    (
        ("check",),
        "",
        "health check: NaN/Inf, constant tensors, norms at init, duplicates, broken ties; "
        "enter on a finding goes to it",
    ),
    (
        ("probe",),
        "",
        "probe: run the model once on the example input (train mode, backward: t, b in the "
        "dialog); the tree shows output shapes, the pane statistics; escape cancels",
    ),
    (
        ("first_bad",),
        "",
        "after a probe: the first module with NaN/Inf (and its input), then each trainable "
        "parameter that got no gradient",
    ),
    (
        ("freeze",),
        "",
        "freeze / unfreeze the subtree or parameter (requires_grad); with "
        "BatchNorm inside, asks about running statistics",
    ),
    (("reinit",), "", "re-initialise: choose a scheme and a seed"),
    (
        ("cast",),
        "",
        "cast the subtree to bf16, fp16 or fp32 (↑ ↓ in the dialog); norms, biases and "
        "computed buffers stay in float32 (the list is shown and can be edited)",
    ),
    (("replace",), "", "replace the module: edit its constructor call, e.g. nn.Linear(4096, 10)"),
    (("delete",), "", "delete the module (puts nn.Identity() in its place)"),
    (
        ("insert",),
        "",
        "insert a module after or before it in a list, at a list's start or end, or inside "
        "any module by name (↑ ↓ in the dialog choose where)",
    ),
    (
        ("add_lora",),
        "",
        "add LoRA adapters (peft) to the selection or subtree; w then writes an adapter folder",
    ),
    (
        ("transplant",),
        "",
        "transplant: copy weights from another checkpoint into the subtree, through a "
        "prefix mapping (prefilled), after a report of what is copied",
    ),
    (("undo", "redo"), "", "undo / redo"),
    (("edit_log",), "", "the edit log, in words and as PyTorch code, then every message in full"),
    (("save",), "", f"write the weights ({extensions_text()}) and the recipe beside them"),
    (
        ("merge",),
        "",
        "on an adapter opened with --arch BASE: merge it into the base and write the result "
        "(.safetensors, .pt or a Hugging Face folder)",
    ),
    (("help",), "", "this help"),
    ((), "^p", "command palette: every action by name, with its key"),
    (
        ("quit_app",),
        "^c",
        "quit (asks when edits are unsaved; ^c twice quits at once)",
    ),
]


def key_text(actions: tuple[str, ...], fixed: str, keys: dict[str, list[str]]) -> str:
    """The keys of a help row: each action's, then the fixed ones."""
    parts = [" ".join(keys.get(action, [])) or "(no key)" for action in actions]
    return "  ".join([*parts, fixed] if fixed else parts)


class HelpScreen(Guarded, ModalScreen[None]):
    """A list of the keys; any of escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def __init__(self, keys: dict[str, list[str]], remapped: bool = False) -> None:
        super().__init__()
        self.keys = keys
        self.remapped = remapped

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 2), show_header=False)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for actions, fixed, what in KEYS:
            table.add_row(Text(key_text(actions, fixed, self.keys)), Text(what))
        with VerticalScroll(id="help-body") as body:
            body.border_subtitle = "escape closes · ↑ ↓ scroll"  # on the frame: never scrolled away
            yield Static(Text("Keys", style="bold underline"))
            yield Static(table)
            yield Static(
                Text(
                    "Markers: ◆ parameter  ● buffer  ○ non-persistent buffer  "
                    "⚠ unregistered tensor. 'shared' marks objects reachable under several paths; "
                    "Δ a module a PEFT adapter updates, ≡ one it holds a copy of.",
                    style="dim",
                )
            )
            if self.remapped:
                yield Static(
                    Text(
                        "Keys as remapped in the config file (--print-config shows it).",
                        style="dim",
                    )
                )

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
