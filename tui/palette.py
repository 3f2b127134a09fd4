"""The command palette (ctrl+p): every action with its keys, and those that have no key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from textual.app import SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from modelbrowse.tui.base import AppBase
from modelbrowse.widgets.module_tree import ModuleTree

if TYPE_CHECKING:
    from textual.app import App

# Action -> (title, what it does), in the order the palette lists them.
APP_ACTIONS: dict[str, tuple[str, str]] = {
    "goto": ("Go to", "move the cursor to a path: features.0.weight, classifier[6]"),
    "filter": ("Filter", "show only the nodes whose path or class matches"),
    "next_match": ("Next match", "the next node the filter matches"),
    "previous_match": ("Previous match", "the previous node the filter matches"),
    "clear": ("Clear filter or selection", "show the whole tree again, unmark the selection"),
    "select": ("Select", "mark the modules a pattern hits; f, i, e then act on all of them"),
    "copy_targets": ("Copy target_modules", "the selection as a PEFT target_modules list"),
    "freeze": ("Freeze or unfreeze", "requires_grad off (or on) under the cursor"),
    "reinit": ("Re-initialise", "new values for the module or tensor under the cursor"),
    "cast": ("Cast", "bf16, fp16 or fp32 under the cursor, norms and biases kept in float32"),
    "replace": ("Replace", "put a torch.nn module of your spec in the cursor's place"),
    "delete": ("Delete", "nn.Identity() in the module's place, or drop a checkpoint key"),
    "insert": ("Insert", "a module after or before the cursor's, or inside it by name"),
    "add_lora": ("Add LoRA", "LoRA adapters (peft) on the selection or the cursor's subtree"),
    "transplant": ("Transplant", "copy weights from another checkpoint into the subtree"),
    "undo": ("Undo", "take back the last edit"),
    "redo": ("Redo", "apply again what was undone"),
    "edit_log": ("Edit log", "the edits so far, as code that repeats them"),
    "save": ("Write", "save the edited weights and the recipe beside them"),
    "merge": (
        "Merge adapter",
        "the open adapter merged into its base, written to a file or folder",
    ),
    "summary": ("Summary", "torchinfo's table of the model"),
    "check": ("Health check", "NaN, Inf, constant tensors, norms at init, duplicates, ties"),
    "probe": ("Probe", "run the model once: output shapes and statistics, gradients"),
    "first_bad": ("First NaN/Inf", "after a probe: where NaN/Inf start, then missing gradients"),
    "help": ("Help", "every key and what it does"),
    "quit_app": ("Quit", "leave (asks first when edits are unsaved)"),
}
TREE_ACTIONS: dict[str, tuple[str, str]] = {
    "cursor_down": ("Down", "the next line of the tree"),
    "cursor_up": ("Up", "the previous line of the tree"),
    "expand": ("Expand", "open the node, or go to its first child"),
    "collapse": ("Collapse", "close the node, or go to its parent"),
    "toggle_node": ("Toggle", "open or close the node"),
    "scroll_home": ("First line", "the top of the tree"),
    "scroll_end": ("Last line", "the bottom of the tree"),
    "cursor_parent": ("Parent", "the node's parent"),
    "cursor_parent_next_sibling": ("Next ancestor", "the parent's next sibling"),
    "cursor_previous_sibling": ("Previous sibling", "the previous node at this level"),
    "cursor_next_sibling": ("Next sibling", "the next node at this level"),
    "toggle_expand_all": ("Expand or collapse all below", "every node under the cursor"),
}


class PaletteActions(AppBase):
    """The palette's commands and the actions only the palette has."""

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """ctrl+p: every action with its keys, then those without a key, then Textual's own."""
        tree = self.screen_stack[0].query_one(ModuleTree)
        yield from commands(APP_ACTIONS, keys_by_action(self, self.BINDINGS), self.run_action)
        tree_bindings = [b for found in tree._bindings.key_to_bindings.values() for b in found]
        yield from commands(TREE_ACTIONS, keys_by_action(self, tree_bindings), tree.run_action)
        yield SystemCommand(
            "Copy path  (no key)",
            "the cursor's path, to the clipboard and the status line",
            self.action_copy_path,
        )
        yield SystemCommand(
            "Collapse all  (no key)", "close every node but the root", self.action_collapse_all
        )
        for command in super().get_system_commands(screen):
            if command.title != "Quit":  # Textual's quits without asking about unsaved edits
                yield command

    def action_copy_path(self) -> None:
        path = self.screen_stack[0].query_one(ModuleTree).cursor_path
        if path is None:
            return
        self.copy_to_clipboard(path)
        self._status_transient(f"copied: {path or '(root)'}")

    def action_collapse_all(self) -> None:
        tree = self.screen_stack[0].query_one(ModuleTree)
        tree.root.collapse_all()
        tree.root.expand()
        tree.select_path("")


def keys_by_action(app: App[Any], bindings: Iterable[BindingType]) -> dict[str, list[str]]:
    """Each action's keys as the footer shows them (`q`, `^q`), after the user's keymap."""
    keys: dict[str, list[str]] = {}
    remapped: dict[str, str] = getattr(app, "_keymap", {}) or {}
    for binding in bindings:
        if isinstance(binding, Binding):
            bound = remapped.get(binding.id, binding.key) if binding.id else binding.key
            for key in bound.split(","):
                shown = app.get_key_display(Binding(key.strip(), binding.action))
                keys.setdefault(binding.action, []).append(shown)
    return keys


def commands(
    actions: dict[str, tuple[str, str]],
    keys: dict[str, list[str]],
    run: Callable[[str], Any],
) -> Iterator[SystemCommand]:
    for action, (title, help_text) in actions.items():
        shown = ", ".join(keys.get(action, [])) or "no key"
        yield SystemCommand(f"{title}  ({shown})", help_text, _runner(run, action))


def _runner(run: Callable[[str], Any], action: str) -> Callable[[], Any]:
    return lambda: run(action)
