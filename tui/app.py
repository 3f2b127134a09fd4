"""The modelbrowse App: composes the widgets and maps keys to calls on its session.

What is loaded and edited lives in a `Session` (`core/session/`), which knows nothing of the
screen; the parts in `tui/` (editing, loading, saving, ...) turn keys, dialogs and workers into
its calls. Torch is imported in a worker after the first paint, so the frame shows at once; the
model is built on `meta` first and materialised afterwards without blocking a key.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Input, Static, Tree

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.session import Session
from modelbrowse.tui.base import LOADING
from modelbrowse.tui.building import BuildActions
from modelbrowse.tui.casting import CastActions
from modelbrowse.tui.failures import FailureHandling
from modelbrowse.tui.freezing import FreezeActions
from modelbrowse.tui.health_check import HealthCheckActions
from modelbrowse.tui.inserting import InsertActions
from modelbrowse.tui.loading import LoadActions
from modelbrowse.tui.lora import LoraActions
from modelbrowse.tui.merging_app import MergeActions
from modelbrowse.tui.options import AppOptions
from modelbrowse.tui.palette import PaletteActions
from modelbrowse.tui.probe_keys import ProbeActions
from modelbrowse.tui.prompting import PromptActions
from modelbrowse.tui.recovering import RecoveryActions
from modelbrowse.tui.saving import SaveActions
from modelbrowse.tui.screens.help import HelpScreen
from modelbrowse.tui.screens.summary import SummaryScreen
from modelbrowse.tui.signals import SignalHandling
from modelbrowse.tui.transplanting import TransplantActions
from modelbrowse.widgets.detail_pane import DetailPane
from modelbrowse.widgets.guarded import Guarded
from modelbrowse.widgets.key_footer import KeyFooter
from modelbrowse.widgets.model_header import ModelHeader
from modelbrowse.widgets.module_tree import ModuleTree, TreeEntry
from modelbrowse.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch
    from textual.actions import ActionParseResult
    from textual.dom import DOMNode
    from textual.driver import Driver


# Tensors up to this size get exact statistics on the UI thread (well under a millisecond).
INLINE_STATS_LIMIT = 65_536
# Highlights closer together than this come from a held key: the detail pane (a Rich table,
# two thirds of a keystroke's cost on a big tree) waits until the cursor rests for as long.
HELD_KEY_GAP_S = 0.05
# Below this (columns, lines) the layout cannot show a tree line and its details.
MIN_SIZE = (40, 10)
# Narrower than this with enough lines, the detail pane goes below the tree.
NARROW_WIDTH = 70
STACK_MIN_HEIGHT = 20
# Keys that open an input take priority, so that it is open before the keys typed after them
# arrive (else those go to the tree); inside an input they are text.
PROMPT_ACTIONS = frozenset({"goto", "filter", "select", "save", "replace", "insert"})
PROMPT_ACTIONS |= {"add_lora"}
CHANGING_ACTIONS = frozenset(
    {"freeze", "reinit", "replace", "delete", "insert", "undo", "redo", "save", "cast"}
)
CHANGING_ACTIONS |= {"add_lora"}
PROMPT_ACTIONS |= {"transplant"}
CHANGING_ACTIONS |= {"transplant"}


# What waits for the full open while the tree read before torch is shown.
WAIT_FOR_MODEL_ACTIONS = CHANGING_ACTIONS | {"select", "summary", "copy_targets"}
WAIT_FOR_MODEL_ACTIONS |= {"check", "probe"}
WAIT_FOR_MODEL_ACTIONS |= {"merge"}


class ModelBrowseApp(
    Guarded,
    FailureHandling,
    SignalHandling,
    RecoveryActions,
    PaletteActions,
    PromptActions,
    LoadActions,
    FreezeActions,
    CastActions,
    InsertActions,
    LoraActions,
    TransplantActions,
    BuildActions,
    SaveActions,
    HealthCheckActions,
    ProbeActions,
    MergeActions,
):
    """Browse a model: tree on the left, details on the right. The state is the session's
    (`core/session/`); the parts map keys and workers to its calls."""

    CSS_PATH = "app.tcss"
    TITLE = "modelbrowse"
    COMMAND_PALETTE_BINDING = "ctrl+p"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit_app", "Quit", id="quit_app"),
        Binding("ctrl+q", "quit_app", "Quit", show=False, priority=True),
        Binding("ctrl+c", "ctrl_c", "Quit", show=False, priority=True),
        # Priority (with select below), so that the prompt has focus before the keys typed right
        # after it arrive.
        Binding("colon", "goto", "Go to", priority=True, id="goto"),
        Binding("slash", "filter", "Filter", priority=True, id="filter"),
        Binding("n", "next_match", "Next match", show=False, id="next_match"),
        Binding("N", "previous_match", "Prev match", show=False, id="previous_match"),
        Binding("f", "freeze", "Freeze", id="freeze"),
        Binding("i", "reinit", "Re-init", show=False, id="reinit"),
        Binding("e", "replace", "Replace", priority=True, id="replace"),
        Binding("d", "delete", "Delete", show=False, id="delete"),
        Binding("a", "insert", "Insert", show=False, priority=True, id="insert"),
        Binding("u", "undo", "Undo", id="undo"),
        Binding("ctrl+r", "redo", "Redo", show=False, id="redo"),
        Binding("L", "edit_log", "Log", id="edit_log"),
        Binding("w", "save", "Write", priority=True, id="save"),
        Binding("s", "summary", "Summary", show=False, id="summary"),
        Binding("C", "check", "Check", show=False, id="check"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("escape", "clear", "Clear filter", show=False, id="clear"),
        Binding("asterisk,m", "select", "Select", show=False, priority=True, id="select"),
        Binding("Y", "copy_targets", "Copy targets", show=False, id="copy_targets"),
        Binding("c", "cast", "Cast", show=False, id="cast"),
        Binding("A", "add_lora", "LoRA", show=False, priority=True, id="add_lora"),
        Binding("T", "transplant", "Transplant", show=False, priority=True, id="transplant"),
        Binding("p", "probe", "Probe", show=False, id="probe"),
        Binding("exclamation_mark", "first_bad", "First NaN", show=False, id="first_bad"),
        Binding("M", "merge", "Merge", show=False, id="merge"),
    ]

    def __init__(self, options: AppOptions, driver_class: type[Driver] | None = None) -> None:
        super().__init__(driver_class=driver_class)
        self.options = options
        self.session = Session(options)
        self.error_message = None
        self._detail_token = 0  # statistics under way are for this node's pane only
        self._last_highlight = 0.0
        self._pending_detail: Timer | None = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """While a dialog is open, the main screen's keys do nothing (they were typed ahead)."""
        if action == "ctrl_c":
            return True  # the second ctrl+c quits, whatever dialog the first one opened
        if action in PROMPT_ACTIONS and isinstance(self.focused, Input):
            return False  # `:` and `/` are text inside an input
        if self.session.saving and action in CHANGING_ACTIONS:
            return None  # the model must not change while it is being written
        if self.session.diff_view is not None and action in CHANGING_ACTIONS:
            return None  # a comparison is read-only
        if self.session.probe.running and action in CHANGING_ACTIONS:
            return None  # the probe's hooks are on the model until it ends
        if len(self.screen_stack) > 1:
            own = {b.action for b in self.BINDINGS if isinstance(b, Binding)}
            return action not in own
        return True

    async def run_action(
        self,
        action: str | ActionParseResult,
        default_namespace: DOMNode | None = None,
        namespaces: Mapping[str, DOMNode] | None = None,
    ) -> bool:
        """While the keys' tree read before torch is shown, keys that need the model say so
        (their actions import torch, which the loading worker is importing)."""
        if self.session.previewing:
            namespace = self if default_namespace is None else default_namespace
            _, name, _ = self._parse_action(action, namespace, namespaces)
            if name in WAIT_FOR_MODEL_ACTIONS:
                self.notify(LOADING, severity="warning")
                return True
        handled: bool = await super().run_action(action, default_namespace, namespaces)
        return handled

    # --- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield ModelHeader(self.options.label, id="header")
        with Horizontal(id="main"):
            yield ModuleTree(id="tree")
            yield DetailPane(id="detail")
        yield StatusLine(id="status")
        yield Static("", id="too-small")
        yield KeyFooter()

    def on_resize(self, event: events.Resize) -> None:
        self._fit_layout(event.size.width, event.size.height)

    def _fit_layout(self, width: int, height: int) -> None:
        """Narrow terminals stack the panes; below a usable size, one line says so."""
        too_small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        self.screen.set_class(too_small, "too-small")
        self.screen.set_class(width < NARROW_WIDTH and height >= STACK_MIN_HEIGHT, "narrow")
        if too_small:
            need = f"{MIN_SIZE[0]}x{MIN_SIZE[1]}"
            self.query_one("#too-small", Static).update(
                Text(f"terminal too small ({width}x{height}): modelbrowse needs {need} · q quits")
            )

    def on_mount(self) -> None:
        if self.options.keymap:
            self.set_keymap(self.options.keymap)
        if self.options.theme:
            self.theme = self.options.theme
        self._fit_layout(self.size.width, self.size.height)
        self._install_signal_handlers()
        self.screen.set_focus(self.query_one(ModuleTree))
        self.query_one(ModelHeader).show_loading("loading torch")
        # After the first paint: the prompt bar is not needed before a model is shown (an Input
        # is a tenth of the frame's widget work), and importing torch in a thread holds the
        # interpreter lock for most of a second, which the frame would wait for.
        self.call_after_refresh(self._mount_prompt_bar)
        self.call_after_refresh(self.load_model)

    # --- the detail pane -------------------------------------------------------------------

    @on(Tree.NodeHighlighted)
    def _on_highlight(self, event: Tree.NodeHighlighted[TreeEntry]) -> None:
        entry = event.node.data
        if entry is None or self.session.index is None:
            return
        self._cursor_moved(entry.path if entry.page is None else None)
        now = time.monotonic()
        held = now - self._last_highlight < HELD_KEY_GAP_S
        self._last_highlight = now
        if self._pending_detail is not None:
            self._pending_detail.stop()
            self._pending_detail = None
        if held:
            self._detail_token += 1  # statistics under way are for a node already left
            self._pending_detail = self.set_timer(
                HELD_KEY_GAP_S, self._show_cursor_entry, name="detail pane"
            )
            return
        self._show_entry(entry)

    def _show_cursor_entry(self) -> None:
        """The pane for whatever the cursor is on once it rests (the tree may have changed)."""
        node = self.query_one(ModuleTree).cursor_node
        if node is not None and node.data is not None:
            self._show_entry(node.data)

    def _show_entry(self, entry: TreeEntry) -> None:
        self._pending_detail = None
        if self.session.index is None:
            return
        if entry.page is not None:
            start, stop = entry.page
            self.query_one(DetailPane).show_message(
                f"modules {start} to {stop - 1} of {entry.path or 'the root'}: expand to see them"
            )
            return
        self._show_detail(entry.path)

    def _show_detail(self, path: str) -> None:
        index = self.session.index
        assert index is not None
        self._detail_token += 1
        pane = self.query_one(DetailPane)
        node = index.node(path)
        pane.show_node(index, path)
        self._show_probe_detail(path, node.is_module)
        if self.session.previewing:
            if not node.is_module:
                pane.show_stats(None, "reading values…")
            return
        from modelbrowse.core.stats import compute_stats, estimate_stats, unavailable_reason

        note = self.session.comparison_note(path)
        if note is not None:
            pane.show_note("A vs B", note)
        source_note = self.session.source.detail_note(path) if self.session.source else None
        if source_note is not None:
            pane.show_note(*source_note)
        if node.is_module:
            return
        tensor = node.tensor
        if tensor.is_meta and not self.options.meta:
            self._ensure_materialising()
            pane.show_stats(None, "loading: initialising real tensors…")
            return
        reason = unavailable_reason(tensor)
        try:
            if reason is not None:
                pane.show_stats(None, reason)
            elif tensor.numel() <= INLINE_STATS_LIMIT:
                pane.show_stats(compute_stats(tensor))
            else:
                pane.show_stats(estimate_stats(tensor))
                self.exact_stats(self._detail_token, tensor)
        except ModelBrowseError as exc:  # a quantized weight's pieces that do not dequantize
            pane.show_stats(None, str(exc))

    @work(thread=True, exclusive=True, group="stats")
    def exact_stats(self, token: int, tensor: torch.Tensor) -> None:
        import torch

        from modelbrowse.core.stats import StatsCancelled, compute_stats

        # One core for this thread only (OpenMP's thread count is per thread): the other
        # stays free for the UI, so holding j through big tensors never stalls a key.
        torch.set_num_threads(1)
        try:
            stats = compute_stats(tensor, cancelled=lambda: token != self._detail_token)
        except StatsCancelled:
            return  # the cursor moved on: the next node's statistics need the CPU
        except ModelBrowseError as exc:  # as above
            self.call_from_thread(self._stats_ready, token, None, str(exc))
            return
        self.call_from_thread(self._stats_ready, token, stats)

    def _stats_ready(self, token: int, stats: Any, note: str = "") -> None:
        if token == self._detail_token:  # a result for a node the cursor has left is dropped
            self.query_one(DetailPane).show_stats(stats, note)

    # --- other screens ---------------------------------------------------------------------

    def action_help(self) -> None:
        from modelbrowse.tui.palette import keys_by_action

        keys = keys_by_action(self, [*self.BINDINGS, *ModuleTree.BINDINGS])
        self.push_screen(HelpScreen(keys, remapped=bool(self.options.keymap)))

    def action_summary(self) -> None:
        if self.session.index is None or self.session.source is None:
            self.notify(LOADING, severity="warning")
            return
        from modelbrowse.core.arguments import describe_input
        from modelbrowse.core.example_inputs import input_dtypes, input_hint

        model = self.session.index.model
        example = self.session.example_input()
        if example is None:
            self.notify(
                "no example input for this model: start with --input-shape " + input_hint(model),
                severity="warning",
            )
            return
        shapes, dtypes = example.shapes, input_dtypes(model, example)

        def make_summary() -> str:
            from modelbrowse.core.model_summary import summarize

            return summarize(model, shapes, dtypes=dtypes)

        title = f"torchinfo summary for input {describe_input(shapes, dtypes)}"
        self.push_screen(SummaryScreen(title, make_summary))
