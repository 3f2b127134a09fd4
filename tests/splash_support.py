"""Textual's own first frame of the app, cell by cell, and the splash's styles taken from it.

`python -m tests.splash_support > tui/splash_styles.py` writes the styles again (after a
Textual upgrade changes the theme, say); tests/e2e/test_splash.py says when that is due.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.color import ColorSystem
from rich.style import Style
from textual._compositor import LayoutUpdate

from modelbrowse.tui.app import ModelBrowseApp
from modelbrowse.tui.options import AppOptions

Look = tuple[str | None, str | None, bool, bool]
"""Foreground and background (hex), bold, italic; a blank's foreground is None."""
Cell = tuple[str, Look]

SYSTEMS = {
    "truecolor": ColorSystem.TRUECOLOR,
    "256": ColorSystem.EIGHT_BIT,
    "standard": ColorSystem.STANDARD,
}
# Where each style shows in the frame at 120x40 for `alexnet`.
SAMPLES = {
    "header": (0, 0),
    "header_title": (1, 0),
    "header_name": (14, 0),
    "header_loading": (23, 0),
    "tree_border": (0, 1),
    "tree": (1, 2),
    "tree_cursor": (3, 2),
    "detail_border": (66, 1),
    "detail": (67, 2),
    "detail_loading": (68, 2),
    "status": (0, 38),
    "footer_key": (1, 39),
    "footer_text": (3, 39),
    "footer_separator": (108, 39),
}


def look_of(style: Style, text: str) -> Look:
    fg = style.color.get_truecolor().hex if style.color and text != " " else None
    bg = style.bgcolor.get_truecolor().hex if style.bgcolor else None
    bold = bool(style.bold) and text != " "
    italic = bool(style.italic) and text != " "
    return fg, bg, bold, italic


def _no_load() -> None:
    """Stands in for the app's loading worker: the frame while torch loads."""


async def _textual_cells(width: int, height: int, label: str) -> list[list[Cell]]:
    app = ModelBrowseApp(AppOptions(source=label))
    # A worker method is an attribute to a type checker, typed as what `@work` returns.
    app.load_model = _no_load  # type: ignore[assignment]
    async with app.run_test(size=(width, height)) as pilot:
        await pilot.pause()
        update = app.screen._compositor.render_update(full=True)
        assert isinstance(update, LayoutUpdate)  # what a full update is
        rows: list[list[Cell]] = []
        for line in update.strips:
            row: list[Cell] = []
            for strip in line:
                for segment in strip:
                    style = segment.style or Style()
                    row += [(char, look_of(style, char)) for char in segment.text]
            rows.append(row)
        return rows


def textual_cells(width: int, height: int, label: str) -> list[list[Cell]]:
    """The app's first frame (torch not yet loaded) as Textual renders it."""
    return asyncio.run(_textual_cells(width, height, label))


def styles_module() -> str:
    """The source of tui/splash_styles.py, from Textual's rendering of the frame."""
    cells = textual_cells(120, 40, "alexnet")
    looks: dict[str, Any] = {}
    sgr: dict[str, dict[str, str]] = {system: {} for system in SYSTEMS}
    for name, (x, y) in SAMPLES.items():
        _, look = cells[y][x]
        looks[name] = look
        fg, bg, bold, italic = look
        for system, rich_system in SYSTEMS.items():
            # A fresh Style each time: Rich keeps the first codes it made for a style.
            style = Style(color=fg, bgcolor=bg, bold=bold or None, italic=italic or None)
            sgr[system][name] = style._make_ansi_codes(rich_system)
    lines = [
        '"""The splash\'s styles, taken from Textual\'s own first frame (default theme).',
        "",
        "Written by `python -m tests.splash_support > tui/splash_styles.py`; do not edit.",
        '"""',
        "",
        "# name: (foreground, background, bold, italic), as Textual renders it in truecolor",
        f"LOOKS = {looks!r}",
        "# name: SGR parameters in each colour system, as Rich writes them for Textual",
        f"SGR = {sgr!r}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(styles_module(), end="")
