"""The module tree: a lazy Textual `Tree` over a node index.

Children are added when a node is first expanded, and long module lists are split into pages of
`PAGE_SIZE`, so the cost of the tree follows what is on screen, not the size of the model.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from modelbrowse.core.nodes import NodeKind, quantization_of
from modelbrowse.core.reading.quantized_layouts import scheme_text
from modelbrowse.core.units import human_count, printable, shape_text
from modelbrowse.widgets.guarded import Guarded
from modelbrowse.widgets.quick_tree import QuickTree

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.nodes import Node

PAGE_SIZE = 100
# shift+space opens a whole subtree only up to this many lines.
EXPAND_ALL_LIMIT = 2_000

# Markers that tell kinds apart without colour.
KIND_MARKERS = {
    NodeKind.PARAMETER: ("◆", "param"),
    NodeKind.BUFFER: ("●", "buffer"),
    NodeKind.NONPERSISTENT_BUFFER: ("○", "buffer, non-persistent"),
    NodeKind.UNREGISTERED_TENSOR: ("⚠", "unregistered tensor"),
    NodeKind.QUANTIZED: ("◇", "quantized"),
}


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """What a tree line stands for: a path, or a page of a long module list."""

    path: str
    page: tuple[int, int] | None = None


# How a comparison (`--diff`) marks a line, or a PEFT adapter (Δ updated, ≡ copied): -> style.
MARK_STYLES = {
    "-": "bold red",
    "+": "bold green",
    "!": "bold yellow",
    "≠": "bold yellow",
    "Δ": "bold cyan",
    "≡": "bold cyan",
}


def node_label(index: NodeIndex, node: Node, mark: str = "") -> Text:
    """`features  Sequential  2.5M`, or `weight ◆ (64, 3, 11, 11)  23.3K` for a tensor."""
    name = printable(node.name) if node.path else printable(node.type_name)
    label = Text()
    if mark:
        label.append(f"{mark} ", style=MARK_STYLES.get(mark, "yellow" if mark == "~" else "dim"))
    shared = index.is_shared(node.path)
    if node.is_module:
        totals = index.totals(node.path)
        label.append(name, style="bold")
        if node.path:
            label.append(f"  {printable(node.type_name)}", style="cyan")
        label.append(f"  {human_count(totals.params)}", style="green")
        if totals.params and totals.trainable == 0:
            label.append("  frozen", style="blue")
        elif totals.frozen:
            label.append("  partly frozen", style="blue")
    else:
        marker, _ = KIND_MARKERS[node.kind]
        tensor = node.obj
        style = "yellow" if node.kind is NodeKind.UNREGISTERED_TENSOR else "magenta"
        label.append(f"{marker} ", style=style)
        label.append(name)
        label.append(f"  {shape_text(tuple(tensor.shape))}", style="dim")
        label.append(f"  {human_count(tensor.numel())}", style="green")
        quantization = quantization_of(tensor)
        if node.kind is NodeKind.QUANTIZED:  # a layer's pieces: with its bits (`GPTQ 4-bit`)
            label.append(f"  {scheme_text(tensor.layout)}", style="cyan")
        elif quantization is not None:
            label.append(f"  {printable(quantization.scheme)}", style="cyan")
        if node.kind is NodeKind.PARAMETER and not tensor.requires_grad:
            label.append("  frozen", style="blue")
        if node.kind is NodeKind.UNREGISTERED_TENSOR:
            label.append("  not registered", style="yellow")
    if shared:
        label.append("  shared", style="bold magenta")
    return label


class ModuleTree(Guarded, QuickTree[TreeEntry]):
    """A collapsible module tree that reads a `NodeIndex`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False, id="cursor_down"),
        Binding("k", "cursor_up", "Up", show=False, id="cursor_up"),
        Binding("right,l", "expand", "Expand", show=False, id="expand"),
        Binding("left,h", "collapse", "Collapse", show=False, id="collapse"),
        Binding("enter", "toggle_node", "Toggle", show=False, id="toggle_node"),
        Binding("home,g", "scroll_home", "First", show=False, id="scroll_home"),
        Binding("end,G", "scroll_end", "Last", show=False, id="scroll_end"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("loading…", data=TreeEntry(""), **kwargs)
        self.index: NodeIndex | None = None
        self.filter_query: str = ""
        self.guide_depth = 3
        self.show_root = True
        self._populated: set[int] = set()
        self.marks: dict[str, str] = {}
        # The source's own marks (a PEFT adapter's modules), under any selection's.
        self.source_marks: dict[str, str] = {}
        # What a probe adds after a line's label (its output shape, a NaN mark), if one ran.
        self.suffix: Callable[[Node], Text | None] | None = None

    def _label(self, node: Node) -> Text:
        assert self.index is not None
        path = node.path
        label = node_label(
            self.index, node, self.marks.get(path) or self.source_marks.get(path, "")
        )
        suffix = self.suffix(node) if self.suffix is not None else None
        return label if suffix is None else label + suffix

    # --- loading -------------------------------------------------------------------------

    def load(self, index: NodeIndex, select: str = "") -> None:
        """Show a fresh index, root expanded to the first level, cursor on `select`."""
        self.index = index
        self.filter_query = ""
        self._reset_root()
        self.root.expand()
        self.select_path(select if select in index else "")

    def _reset_root(self) -> None:
        assert self.index is not None
        self.clear()
        self._populated.clear()
        self.root.data = TreeEntry("")
        self.root.set_label(self._label(self.index.root))
        self._populate(self.root)

    def reload(self, index: NodeIndex) -> None:
        """Show a changed index, keeping what was expanded and the cursor where it was."""
        expanded = self._expanded_below(self.root)
        cursor = self.cursor_path or ""
        self.index = index
        if self.filter_query:
            return  # the owner re-applies the filter over the new index
        with self.one_invalidation():
            self._reset_root()
            self._expand_again(self.root, expanded)
            self.root.expand()
        self._restore_cursor(cursor)

    def _expanded_below(self, top: TreeNode[TreeEntry]) -> set[TreeEntry]:
        """The entries of the lines under `top` that are expanded now."""
        expanded: set[TreeEntry] = set()
        stack = list(top.children)
        while stack:
            below = stack.pop()
            if below.is_expanded and below.data is not None:
                expanded.add(below.data)
            stack.extend(below.children)
        return expanded

    def _expand_again(self, top: TreeNode[TreeEntry], expanded: set[TreeEntry]) -> None:
        """Build the lines under `top` (emptied) and open again those that were open."""
        stack = [top]
        while stack:
            current = stack.pop()
            if current is top or current.data in expanded:
                self._populate(current)
                if current is not top:
                    current.expand()
                stack.extend(current.children)

    def _restore_cursor(self, cursor: str) -> None:
        assert self.index is not None
        while cursor and cursor not in self.index:
            cursor = cursor.rpartition(".")[0]  # the node went away: its nearest ancestor
        self.select_path(cursor or "")

    def reload_parents(self, index: NodeIndex, paths: list[str]) -> None:
        """Show what changed at `paths` (replaced, added or removed): only the lines under
        their parents are built again, the others keep theirs and are relabelled."""
        parents = {path.rpartition(".")[0] for path in paths}
        if not paths or "" in paths or self.filter_query:
            self.reload(index)
            return
        cursor = self.cursor_path or ""
        self.index = index
        targets: list[TreeNode[TreeEntry]] = []
        stack: list[TreeNode[TreeEntry]] = [self.root]
        while stack:
            tree_node = stack.pop()
            entry = tree_node.data
            if entry is not None and entry.page is None and entry.path in parents:
                targets.append(tree_node)  # its pages, if any, are rebuilt with it
                continue
            stack.extend(tree_node.children)
        with self.one_invalidation():
            for tree_node in targets:
                self._rebuild(tree_node)
        self.refresh_labels()
        self._restore_cursor(cursor)

    def _rebuild(self, tree_node: TreeNode[TreeEntry]) -> None:
        """Build the lines under `tree_node` again, keeping what was expanded below it."""
        assert self.index is not None and tree_node.data is not None
        expanded = self._expanded_below(tree_node)
        tree_node.remove_children()
        if tree_node.data.path not in self.index:
            return
        has_children = bool(self.index.node(tree_node.data.path).children)
        if tree_node.allow_expand != has_children:
            tree_node.allow_expand = has_children
        if tree_node.id not in self._populated:
            return  # never expanded: its lines are built when it is
        self._populated.discard(tree_node.id)
        self._expand_again(tree_node, expanded)

    def rebind(self, index: NodeIndex) -> None:
        """Point the tree at a new index over the same paths (after materialising): relabel."""
        self.index = index
        self.refresh_labels()

    def refresh_labels(self) -> None:
        """Label every built line again from the index; the tree is repainted once.

        `TreeNode.set_label` queues a repaint of its own per line, each looking through the
        visible lines: after a freeze that was a message for each of hundreds of lines. Here a
        changed label is set as `set_label` sets it, and one refresh repaints what is shown.
        """
        assert self.index is not None
        changed = False
        stack: list[TreeNode[TreeEntry]] = [self.root]
        while stack:
            tree_node = stack.pop()
            entry = tree_node.data
            if entry is not None and entry.page is None and entry.path in self.index:
                label = self._label(self.index.node(entry.path))
                if label != tree_node.label:
                    self.set_label_quietly(tree_node, label)
                    changed = True
            stack.extend(tree_node.children)
        if changed:
            self.refresh()

    def get_label_width(self, node: TreeNode[TreeEntry]) -> int:
        """The width `render_label` gives, without rendering the label: Tree measures every
        line each time lines are added or removed (hundreds of lines per expand or edit)."""
        label = node.label  # a Text once Tree has processed it; typed as either
        width = cell_len(label) if isinstance(label, str) else label.cell_len
        if not node.allow_expand:
            return width
        icon = self.ICON_NODE_EXPANDED if node.is_expanded else self.ICON_NODE
        return cell_len(icon) + width

    # --- lazy children -------------------------------------------------------------------

    def _on_tree_node_expanded(self, event: Tree.NodeExpanded[TreeEntry]) -> None:
        self._populate(event.node)

    def _populate(self, tree_node: TreeNode[TreeEntry]) -> None:
        if tree_node.id in self._populated or self.index is None or tree_node.data is None:
            return
        self._populated.add(tree_node.id)
        with self.one_invalidation():
            self._add_entries(tree_node, tree_node.data)

    def _add_entries(self, tree_node: TreeNode[TreeEntry], entry: TreeEntry) -> None:
        assert self.index is not None
        if entry.page is not None:
            start, stop = entry.page
            for child in self.index.child_modules(entry.path, start, stop):
                self._add_model_node(tree_node, child)
            return
        for child in self.index.child_tensors(entry.path):
            self._add_model_node(tree_node, child)
        count = self.index.module_count(entry.path)
        if count > PAGE_SIZE:
            name = self.index.node(entry.path).name if entry.path else "children"
            for start in range(0, count, PAGE_SIZE):
                stop = min(start + PAGE_SIZE, count)
                label = Text(f"{name}[{start}:{stop}]", style="italic")
                label.append(f"  {stop - start} modules", style="dim")
                tree_node.add(label, data=TreeEntry(entry.path, (start, stop)))
        else:
            for child in self.index.child_modules(entry.path):
                self._add_model_node(tree_node, child)

    def _add_model_node(self, parent: TreeNode[TreeEntry], child: Node) -> TreeNode[TreeEntry]:
        assert self.index is not None
        label = self._label(child)
        if child.is_module and child.children:
            return parent.add(label, data=TreeEntry(child.path))
        return parent.add_leaf(label, data=TreeEntry(child.path))

    # --- navigation ----------------------------------------------------------------------

    def action_expand(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and not node.is_expanded:
            node.expand()
        elif node.is_expanded and node.children:
            self.move_cursor(node.children[0])

    def action_collapse(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.is_expanded and node.allow_expand:
            node.collapse()
        elif node.parent is not None:
            self.move_cursor(node.parent)

    def action_toggle_expand_all(self) -> None:
        """shift+space: open everything below the cursor, unless that is too many lines (Textual
        lays out every visible line again on each change), or close it all."""
        node = self.cursor_node
        if node is None or node.data is None or self.index is None:
            return
        if node.is_expanded:
            node.collapse_all()
            return
        lines = sum(
            1 for _ in itertools.islice(self.index.subtree(node.data.path), EXPAND_ALL_LIMIT)
        )
        if lines >= EXPAND_ALL_LIMIT:
            node.expand()
            self.notify(
                f"more than {EXPAND_ALL_LIMIT:,} lines below: opened one level (l opens more)",
                severity="warning",
                markup=False,
            )
            return
        stack = [node]
        with self.one_invalidation():
            while stack:
                current = stack.pop()
                self._populate(current)
                if current.allow_expand:
                    current.expand()
                stack.extend(current.children)

    def tree_node_for(self, path: str, expand: bool = True) -> TreeNode[TreeEntry] | None:
        """The tree line of `path`, expanding (and populating) its ancestors on the way."""
        if self.index is None or path not in self.index:
            return None
        chain = [path]
        while chain[-1]:
            chain.append(self.index.node(chain[-1]).parent or "")
        current = self.root
        for step in reversed(chain[:-1]):
            found = self._child_for(current, step)
            if found is None:
                return None
            current = found
        ancestor = current.parent
        while expand and ancestor is not None:
            ancestor.expand()
            ancestor = ancestor.parent
        return current

    def _child_for(self, tree_node: TreeNode[TreeEntry], path: str) -> TreeNode[TreeEntry] | None:
        self._populate(tree_node)
        position: int | None = None  # among the parent's modules, for finding its page
        for child in tree_node.children:
            entry = child.data
            if entry is None:
                continue
            if entry.page is None and entry.path == path:
                return child
            if entry.page is not None and self.index is not None:
                if position is None:
                    position = self.index.module_position(path)
                start, stop = entry.page
                if start <= position < stop:
                    return self._child_for(child, path)
        return None

    def select_path(self, path: str) -> bool:
        """Move the cursor to `path`, expanding what hides it; False when it is not shown."""
        tree_node = self.tree_node_for(path)
        if tree_node is None:
            return False
        self.move_to(tree_node)
        return True

    def move_to(self, tree_node: TreeNode[TreeEntry]) -> None:
        """Move the cursor to a line that may have been added or revealed a moment ago."""
        self.number_lines()
        self.move_cursor(tree_node)
        self.scroll_to_node(tree_node, animate=False)

    @property
    def cursor_path(self) -> str | None:
        node = self.cursor_node
        if node is None or node.data is None or node.data.page is not None:
            return None
        return node.data.path

    # --- filtering -----------------------------------------------------------------------

    def apply_filter(self, query: str, matches: list[str]) -> None:
        """Show only `matches` and their ancestors, expanded; an empty query shows everything."""
        assert self.index is not None
        current = self.cursor_path or ""
        self.filter_query = query
        if not query:
            self._reset_root()
            self.root.expand()
            self.select_path(current)
            return
        match_set = set(matches)
        keep: set[str] = {""}
        for path in matches:
            keep.add(path)
            parent = self.index.node(path).parent
            while parent is not None and parent not in keep:
                keep.add(parent)
                parent = self.index.node(parent).parent
        with self.one_invalidation():
            self.clear()
            self._populated.clear()
            self.root.data = TreeEntry("")
            self.root.set_label(self._label(self.index.root))
            self._populated.add(self.root.id)  # a filtered tree never lazy-loads more children
            lines: dict[str, TreeNode[TreeEntry]] = {"": self.root}
            for path in self.index.paths():
                if not path or path not in keep:
                    continue
                node = self.index.node(path)
                parent_line = lines[node.parent or ""]
                label = self._label(node)
                if path in match_set:
                    label.stylize("reverse", 0, len(printable(node.name)))
                has_kept_children = any(c in keep for c in node.children)
                line = parent_line.add(
                    label,
                    data=TreeEntry(path),
                    expand=has_kept_children,
                    allow_expand=has_kept_children,
                )
                self._populated.add(line.id)
                lines[path] = line
        self.root.expand()
        target = current if current in lines and current else (matches[0] if matches else "")
        self.move_to(lines.get(target, self.root))
