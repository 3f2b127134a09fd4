"""Keys and edits on the 100,000-module synthetic model, in one fresh process.

`python -m benchmarks.large_model_worker MODE [TIMEOUT]`, printing one JSON line of seconds:

- `app`: `ModelBrowseApp` on `benchmarks/synthetic_model.py:Synthetic100k`, headless at 120x40
  (Pilot). Once the tree shows real tensors (materialised in a worker) and the edit history is
  started: expand `layers` (200 page lines), its first page `layers[0:100]` (100 blocks) and the
  block `layers.0`, each with `l`; untimed, blocks 0 to 9 and their `fc1` (weight and bias); then,
  from the `layers` line, `j` 200 times through that region (`j_p95`, `j_median`, `j_max`),
  after 20 presses of `x`, which nothing is bound to (`noop_median`: what timing costs). Then
  collapse and expand again the first page and `layers` (`h`, `l`, five times each, the
  medians) and expand and collapse a new block `layers.50` (once: only a first expand adds its
  lines); `expand_max` is the slowest of these figures, the first expands above included. A
  full garbage collection goes before the expands, the presses, the collapses and the edits (the
  first one's time is `gc_full`), so that a collection of what loading left does not land on one
  key. Then
  the edits, each timed from its key until the app has applied it and drawn the result: `f` on
  the root (freeze: no dialog), `u`, `e` on `layers.0.fc1` then `enter` in the dialog holding
  `nn.Linear(8, 16)` (timed from `enter`; opening the dialog is `replace_dialog`), `u` again;
  the four `EDIT_ROUNDS` times, each figure the median of its rounds. `edit_undo` is the slower
  undo, `edit_max` the slowest single edit of all. Last, `freeze_floor`: torch's
  own `model.requires_grad_(False)` on the same model in the same process (then undone), and
  `dialog_cancel`: the replace dialog opened again and closed with `escape` (no edit), timed
  like `edit_replace`: what closing a dialog and redrawing the screen costs (both medians of
  `EDIT_ROUNDS`).
- `tree`: the floor for the keys: a plain Textual `Tree` (j/k/l/h bound to the same moves) over
  the same lines, children added on first expand from a dict of labels, no detail pane. The same
  expands, presses and collapses; the same keys without `edit_*`.

Every key is timed by `pilot_support.timed_press`: from posting the key event until every message
it caused is handled and the frame is rendered (`Pilot.press` itself sleeps at least 40 ms).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.pilot import Pilot
from textual.widgets import Input, Tree
from textual.widgets.tree import TreeNode

from benchmarks.pilot_support import (
    SIZE,
    collect_first,
    percentile,
    settle,
    timed_press,
    wait_for,
)
from benchmarks.synthetic_model import BLOCKS

MODEL = f"{Path(__file__).with_name('synthetic_model.py')}:Synthetic100k"
PRESSES = 200
NOOP_PRESSES = 20
EXPANDED_BLOCKS = 10
PAGE = 100
REPLACE_SPEC = "nn.Linear(8, 16)"
EDIT_ROUNDS = 5


def move(tree: Tree[Any], node: TreeNode[Any]) -> None:
    """Put the cursor on a line (numbering newly added lines first), scrolled into view."""
    _ = tree._tree_lines
    tree.move_cursor(node)
    tree.scroll_to_node(node, animate=False)


async def keys(pilot: Pilot[Any], tree: Tree[Any], find: Any) -> dict[str, float]:
    """The expands, the 200 `j` presses and the collapses; `find(path)` gives a line."""
    out: dict[str, float] = {"gc_full": collect_first()}
    move(tree, find("layers"))
    await settle(pilot)
    out["expand_layers"] = await timed_press(pilot, "l")
    await timed_press(pilot, "j")  # onto layers[0:100]
    out["expand_page"] = await timed_press(pilot, "l")
    await timed_press(pilot, "j")  # onto layers.0
    out["expand_block"] = await timed_press(pilot, "l")
    for i in range(EXPANDED_BLOCKS):
        find(f"layers.{i}").expand()
        find(f"layers.{i}.fc1").expand()
    move(tree, find("layers"))
    await settle(pilot)
    collect_first()
    noop = [await timed_press(pilot, "x") for _ in range(NOOP_PRESSES)]
    times = [await timed_press(pilot, "j") for _ in range(PRESSES)]
    out.update(j_p95=percentile(times, 0.95), j_median=statistics.median(times), j_max=max(times))
    out["noop_median"] = statistics.median(noop)
    page = find("layers").children[0]
    collect_first()
    for name, node in (("page", page), ("layers", find("layers"))):
        move(tree, node)
        await settle(pilot)
        pairs = [(await timed_press(pilot, "h"), await timed_press(pilot, "l")) for _ in range(5)]
        out[f"collapse_{name}"] = statistics.median(c for c, _ in pairs)
        out[f"reexpand_{name}"] = statistics.median(e for _, e in pairs)
    move(tree, find("layers.50"))
    await settle(pilot)
    out["expand_block50"] = await timed_press(pilot, "l")
    out["collapse_block50"] = await timed_press(pilot, "h")
    out["expand_max"] = max(
        v for k, v in out.items() if k.split("_")[0] in ("expand", "collapse", "reexpand")
    )
    return out


async def timed_until(pilot: Pilot[Any], key: str, done: Any, timeout: float) -> float:
    """`timed_press`, continued until `done()` holds (an edit applied after a callback)."""
    start = time.perf_counter()
    await timed_press(pilot, key)
    while not done():
        if time.perf_counter() - start > timeout:
            raise RuntimeError(f"`{key}` did not finish within {timeout:g} s")
        await asyncio.sleep(0.002)
        await settle(pilot)
    return time.perf_counter() - start


async def edits(pilot: Pilot[Any], app: Any, tree: Any, timeout: float) -> dict[str, float]:
    """Freeze the root, undo, replace a Linear, undo; each until applied and drawn."""
    from modelbrowse.tui.screens.dialogs import SpecDialog

    history = app.session.history
    out: dict[str, float] = {}

    def done_count(n: int) -> Any:
        return lambda: len(history.done) == n and app.screen is app.screen_stack[0]

    times: dict[str, list[float]] = {}
    for _ in range(EDIT_ROUNDS):
        tree.select_path("")
        await settle(pilot)
        collect_first()
        times.setdefault("edit_freeze", []).append(
            await timed_until(pilot, "f", done_count(1), timeout)
        )
        if app.session.index.totals().trainable != 0:
            raise RuntimeError("f on the root did not freeze the model")
        times.setdefault("edit_undo_freeze", []).append(
            await timed_until(pilot, "u", done_count(0), timeout)
        )
        tree.select_path("layers.0.fc1")
        await settle(pilot)
        times.setdefault("replace_dialog", []).append(await timed_press(pilot, "e"))
        if not isinstance(app.screen, SpecDialog):
            raise RuntimeError(f"`e` on layers.0.fc1 opened {app.screen!r}, not the spec dialog")
        app.screen.query_one("#spec", Input).value = REPLACE_SPEC
        await settle(pilot)
        times.setdefault("edit_replace", []).append(
            await timed_until(pilot, "enter", done_count(1), timeout)
        )
        times.setdefault("edit_undo_replace", []).append(
            await timed_until(pilot, "u", done_count(0), timeout)
        )
    out.update({name: statistics.median(values) for name, values in times.items()})
    out["edit_undo"] = max(out["edit_undo_freeze"], out["edit_undo_replace"])
    out["edit_max"] = max(max(values) for name, values in times.items() if name.startswith("edit_"))
    # The floor of a replace: the same dialog closed with `escape`, which redraws the screen.
    # The floor of a freeze: torch's own `requires_grad_` over the same model, same process.
    cancels: list[float] = []
    floors: list[float] = []
    for _ in range(EDIT_ROUNDS):
        await timed_press(pilot, "e")
        if not isinstance(app.screen, SpecDialog):
            raise RuntimeError(f"`e` on layers.0.fc1 opened {app.screen!r}, not the spec dialog")
        cancels.append(
            await timed_until(pilot, "escape", lambda: app.screen is app.screen_stack[0], timeout)
        )
        collect_first()
        start = time.perf_counter()
        history.model.requires_grad_(False)
        floors.append(time.perf_counter() - start)
        history.model.requires_grad_(True)
    out["dialog_cancel"] = statistics.median(cancels)
    out["freeze_floor"] = statistics.median(floors)
    return out


async def measure_app(timeout: float) -> dict[str, float]:
    from modelbrowse.tui.app import ModelBrowseApp
    from modelbrowse.tui.options import AppOptions
    from modelbrowse.widgets.module_tree import ModuleTree

    start = time.perf_counter()
    app = ModelBrowseApp(AppOptions(source=MODEL))
    async with app.run_test(size=SIZE) as pilot:

        def ready() -> bool:
            index = app.session.index
            return index is not None and not index.is_meta and app.session.history is not None

        await wait_for(pilot, ready, timeout, "the model with real tensors")
        await settle(pilot)
        loaded = time.perf_counter() - start
        tree = app.query_one(ModuleTree)
        out = await keys(pilot, tree, tree.tree_node_for)
        out.update(await edits(pilot, app, tree, timeout))
        out["loaded"] = loaded
        await app.action_quit()  # the edits were undone: nothing unsaved, no question
    return out


# --- the floor: a plain Tree -------------------------------------------------------------------


def children_of(path: str) -> list[tuple[str, str, bool]]:
    """(path, label, expandable) of the lines under a line, shaped like the app's tree."""
    if path == "":
        return [("layers", "layers  ModuleList  5.9M", True)]
    if path == "layers":
        return [
            (f"layers[{s}:{s + PAGE}]", f"layers[{s}:{s + PAGE}]  {PAGE} modules", True)
            for s in range(0, BLOCKS, PAGE)
        ]
    if path.startswith("layers["):
        start = int(path[7:].split(":")[0])
        return [(f"layers.{i}", f"{i}  Block  296", True) for i in range(start, start + PAGE)]
    if path.count(".") == 1:
        return [
            (f"{path}.norm", "norm  LayerNorm  16", True),
            (f"{path}.fc1", "fc1  Linear  144", True),
            (f"{path}.act", "act  GELU  0", False),
            (f"{path}.fc2", "fc2  Linear  136", True),
            (f"{path}.drop", "drop  Dropout  0", False),
        ]
    return [
        (f"{path}.weight", "◆ weight  (16, 8)  128", False),
        (f"{path}.bias", "◆ bias  16", False),
    ]


class PlainTree(Tree[str]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down"),
        Binding("k", "cursor_up", "Up"),
        Binding("l", "expand", "Expand"),
        Binding("h", "collapse", "Collapse"),
    ]

    def __init__(self) -> None:
        super().__init__(Text("Synthetic100k  5.9M", style="bold"), data="")
        self.lines: dict[str, TreeNode[str]] = {"": self.root}
        self.populated: set[str] = set()

    def populate(self, node: TreeNode[str]) -> None:
        path = node.data or ""
        if path in self.populated:
            return
        self.populated.add(path)
        for child, label, expandable in children_of(path):
            text = Text(label, style="bold" if expandable else "")
            add = node.add if expandable else node.add_leaf
            self.lines[child] = add(text, data=child)

    def _on_tree_node_expanded(self, event: Tree.NodeExpanded[str]) -> None:
        self.populate(event.node)

    def find(self, path: str) -> TreeNode[str]:
        """The line of a path, adding and expanding the lines above it."""
        if path not in self.lines:
            block = int(path.split(".")[1])
            start = block - block % PAGE
            steps = ["layers", f"layers[{start}:{start + PAGE}]", f"layers.{block}"]
            steps += [path] if path.count(".") > 1 else []
            for parent, step in itertools.pairwise(steps):
                if step not in self.lines:
                    self.populate(self.lines[parent])
        node = self.lines[path]
        parent = node.parent
        while parent is not None:
            parent.expand()
            parent = parent.parent
        return node

    def action_expand(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            node.expand()

    def action_collapse(self) -> None:
        node = self.cursor_node
        if node is not None and node.is_expanded:
            node.collapse()


class PlainTreeApp(App[None]):
    def compose(self) -> ComposeResult:
        yield PlainTree()

    def on_mount(self) -> None:
        tree = self.query_one(PlainTree)
        tree.populate(tree.root)
        tree.root.expand()
        tree.focus()


async def measure_tree(timeout: float) -> dict[str, float]:
    app = PlainTreeApp()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = app.query_one(PlainTree)
        out = await keys(pilot, tree, tree.find)
        app.exit()
    return out


MODES = {"app": measure_app, "tree": measure_tree}


def main(mode: str, timeout: float) -> None:
    if mode not in MODES:
        raise SystemExit(f"unknown mode {mode!r}: {', '.join(MODES)}")
    print(json.dumps(asyncio.run(MODES[mode](timeout))))


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) == 3 else 300.0)
