"""A Textual `Tree` that redraws only the rows a key changed.

Textual repaints a scrolled widget whole: every visible row goes through the widget's
`render_line` and then through its `StylesCache` (background, border, tint), even though all
rows but one show the same tree line as before, one row higher. And Tree drops every drawn line
whenever a line is added, expanded or collapsed anywhere. Here a styled row is kept by what it
shows, so a scroll draws one new row and an expand draws only the lines that are new or moved;
lines are added under one invalidation; the scrollbar repaints only the rows where its thumb's
ends moved.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from rich.style import Style
from rich.text import Text
from textual._styles_cache import StylesCache
from textual.cache import LRUCache
from textual.geometry import Offset, Region
from textual.scrollbar import ScrollBar
from textual.strip import Strip
from textual.widgets import Tree
from textual.widgets.tree import TreeDataType, TreeNode

# Styled rows kept: a few screens of a tree, as many as Tree keeps unstyled lines.
ROWS_KEPT = 1024
EIGHTHS = 8  # ScrollBarRender draws a vertical thumb's ends in eighths of a row


def thumb_span(bar: ScrollBar, position: float) -> tuple[int, int] | None:
    """Where a vertical scrollbar draws its thumb for `position`: first and last eighth of a
    row, as Textual's ScrollBarRender places them; None when it draws no thumb."""
    size = bar.size.height
    virtual = math.ceil(bar.window_virtual_size)
    window = math.ceil(bar.window_size) if bar.window_size < bar.window_virtual_size else 0
    if not (window and size and virtual) or size == virtual or virtual == window:
        return None
    thumb = max(1, window / (virtual / size))
    start = int((size - thumb) * (bar.validate_position(position) / (virtual - window)) * EIGHTHS)
    return start, start + math.ceil(thumb * EIGHTHS)


def _rows_between(a: int, b: int) -> range:
    """The rows holding the eighths from a to b, either way round."""
    low, high = sorted((a, b))
    return range(low // EIGHTHS, high // EIGHTHS + 1)


class RowStylesCache(StylesCache):
    """A StylesCache that keeps styled rows by what they show, not by where they are.

    `row_key(y)` names what content row `y` shows (None: do not keep it); a row whose content
    and frame (size, colours, opacity) were styled before is reused without rendering it again.
    `row_key` is a method of the widget, held weakly: Textual keeps every StylesCache for a
    while (a class-level `lru_cache` on `get_inner_outer` has `self` in its keys), and a strong
    hold would keep the widget, and through it the model it shows, alive after the app.
    """

    def __init__(self, row_key: Callable[[int], Hashable | None]) -> None:
        super().__init__()
        self._row_key = weakref.WeakMethod(row_key)  # type: ignore[arg-type]
        self._rows: LRUCache[Hashable, Strip] = LRUCache(ROWS_KEPT)

    def forget_rows(self) -> None:
        self._rows.clear()

    def render_line(self, styles: Any, y: int, *args: Any) -> Strip:
        row_key = self._row_key()
        content = (
            row_key(y - styles.gutter.top)
            if row_key is not None and self._is_content_row(styles, y, *args)
            else None
        )
        if content is None:
            return super().render_line(styles, y, *args)
        # The rest of the arguments: size, content size, padding, colours; then the row
        # renderer (the same for every row) and the border's labels (on its top and bottom rows
        # only), left out; then opacity, ANSI theme and mode.
        key = (content, *args[:5], *args[8:])
        strip = self._rows.get(key)
        if strip is None:
            strip = self._rows[key] = super().render_line(styles, y, *args)
        return strip

    @staticmethod
    def _is_content_row(styles: Any, y: int, size: Any, *_: Any) -> bool:
        """Whether row y is content between the side borders: drawn the same wherever it is.
        Padding, top and bottom borders and outlines depend on the row's place."""
        gutter = styles.gutter
        outlined = any(kind for kind, _ in styles.outline)
        return not outlined and gutter.top <= y < size.height - gutter.bottom


class QuickTree(Tree[TreeDataType]):
    """`Tree`, drawn with less work per frame; behaves and looks the same."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._held_invalidation: bool | None = None  # None: not holding
        super().__init__(*args, **kwargs)
        self._frame: tuple[Style, int, Offset] | None = None
        self._styles_cache = RowStylesCache(self._row_key)

    def on_mount(self) -> None:
        self.call_after_refresh(self._make_scrollbar)

    def _on_unmount(self) -> None:
        self._forget_rows()  # Textual keeps the styles cache a while after the widget goes

    def _make_scrollbar(self) -> None:
        """Textual makes a scrollbar the first time one is needed, and lays the screen out
        again twice for it (mounted, then shown): a third of the first expand that outgrows
        the pane. Made hidden here after the first frame, it is only shown then."""
        _ = self.vertical_scrollbar

    @contextmanager
    def one_invalidation(self) -> Iterator[None]:
        """Add or remove many lines at the cost of one: Tree drops its lines and asks for a
        layout on every `add` (200 pages of a long list took 8 ms); within this block that is
        done once, at the end."""
        if self._held_invalidation is not None:
            yield
            return
        self._held_invalidation = False
        try:
            yield
        finally:
            pending, self._held_invalidation = self._held_invalidation, None
            if pending:
                self._invalidate()

    def _invalidate(self) -> None:
        if self._held_invalidation is not None:
            self._held_invalidation = True
            self._tree_lines_cached = None  # lines read meanwhile are built afresh
            return
        super()._invalidate()

    def set_label_quietly(self, node: TreeNode[TreeDataType], label: str | Text) -> None:
        """Set a line's label as `TreeNode.set_label` does, without its message and refresh:
        the caller refreshes once for many lines."""
        node._label = self.process_label(label)
        node._updates += 1  # part of the key of the line's rendering cache

    def number_lines(self) -> None:
        """Number the lines now: Tree does it lazily, and a node expanded a moment ago has no
        line number until then."""
        _ = self._tree_lines

    def forget_rendering(self) -> None:
        """Drop every rendered line, so the next frame draws all of them afresh."""
        self._clear_line_cache()
        self._forget_rows()

    def clear(self) -> Self:
        self._forget_rows()  # node ids start again from 0
        return super().clear()

    def notify_style_update(self) -> None:
        self._forget_rows()
        super().notify_style_update()

    def _forget_rows(self) -> None:
        styles_cache = getattr(self, "_styles_cache", None)  # None while Widget initialises
        if isinstance(styles_cache, RowStylesCache):
            styles_cache.forget_rows()

    def _row_key(self, y: int) -> Hashable | None:
        """What row `y` shows, in the current frame; None outside a frame or below the last
        line.

        Tree keys its own line cache by the line's place and by a counter bumped whenever a
        line is added, expanded or collapsed anywhere, so every such key redraws every line.
        This key names what the line's drawing depends on instead: its place (its strip
        carries its line number for the mouse), its node and that node's changes (label,
        expanded, cursor, hover), the ancestors' hover and cursor (guide colours) and whether
        each is the last of its siblings (guide shapes); besides, the frame's width, scroll,
        base style and pseudo-classes (focus). Styles and the theme changing clear the rows.
        """
        if self._frame is None:
            return None
        style, width, (scroll_x, scroll_y) = self._frame
        lines = self._tree_lines
        number = y + scroll_y
        if number >= len(lines):
            return None
        line = lines[number]
        *ancestors, node = line.path
        return (
            number,
            node._id,
            node._updates,
            line.last,
            tuple((a._hover_, a._selected_, a.is_last) for a in ancestors),
            self.cursor_line == number,
            self.hover_line == number,
            self.guide_depth,
            self.show_guides,
            width,
            scroll_x,
            style,
            self._pseudo_class_state,
        )

    def render_lines(self, crop: Region) -> list[Strip]:
        """Tree's `render_line` reads `rich_style` (a walk up the DOM, blending backgrounds),
        the size and the scroll offset for every line: half of the time of a frame scrolled by
        a key. They are the same for every line of one frame, so they are read once here."""
        self._frame = (self.rich_style, self.size.width, self.scroll_offset)
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        if self._frame is None:
            return super().render_line(y)
        style, width, (scroll_x, scroll_y) = self._frame
        return self._render_line(y + scroll_y, scroll_x, scroll_x + width, style)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """ScrollView hands every new offset to the scrollbar, which then draws all its rows
        again: a fifth of a frame scrolled by a key. The bar's rows change only where the ends
        of its thumb were or are (and between, where the thumb moved a whole row), so only
        those are repainted."""
        bar = self.vertical_scrollbar if self.show_vertical_scrollbar else None
        old = thumb_span(bar, old_value) if bar is not None else None
        new = thumb_span(bar, new_value) if bar is not None else None
        if bar is None or old is None or new is None:
            super().watch_scroll_y(old_value, new_value)
            return
        bar.set_reactive(ScrollBar.position, bar.validate_position(new_value))
        if old != new:
            width = bar.size.width
            rows = {*_rows_between(old[0], new[0]), *_rows_between(old[1], new[1])}
            bar.refresh(*(Region(0, row, width, 1) for row in rows))
        if round(old_value) != round(new_value):
            self.refresh(self.size.region)
