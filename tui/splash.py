"""The app's first frame, painted with plain escape codes before Textual is imported.

Importing Textual takes about 0.25 s here, most of the first 0.3 s. So once the arguments are
read, the command paints the frame the app is about to paint (the header saying "loading torch",
the two empty panes, the footer's keys), and Textual's own first frame then replaces it cell for
cell. `tests/e2e/test_splash.py` renders both and compares them. Only the default theme and keys, in
a terminal with room for the side-by-side panes, get one; anything else waits for Textual.

Until Textual's driver takes the terminal over, keys typed are neither echoed over the frame nor
lost: they wait in the terminal's input queue and the app reads them once it runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from modelbrowse.tui.splash_styles import SGR

ENTER_ALT_SCREEN = "\x1b[?1049h"
LEAVE_ALT_SCREEN = "\x1b[?1049l"
# The app's layout (tui/app.tcss, tui/app.py): below this width the panes stack.
SIDE_BY_SIDE_WIDTH = 70
MIN_HEIGHT = 10
TREE_PERCENT = 55
LOADING_TORCH = "loading torch…"
LOADING = "loading…"
# The footer's keys as the app shows them with the default key map (tui/app.py's BINDINGS).
FOOTER_KEYS = (
    ("q", "Quit"),
    (":", "Go to"),
    ("/", "Filter"),
    ("f", "Freeze"),
    ("e", "Replace"),
    ("u", "Undo"),
    ("L", "Log"),
    ("w", "Write"),
    ("?", "Help"),
)
PALETTE_KEY = ("^p", "palette")

Run = tuple[str, str]
"""Text and the name of its style (a key of `SGR[system]`)."""


def first_frame(width: int, height: int, label: str) -> list[list[Run]] | None:
    """The app's frame while torch loads, as rows of styled runs; None where the app would lay
    it out otherwise (stacked panes, a header over two lines, a screen too small)."""
    title = f"modelbrowse  {label}  {LOADING_TORCH}"
    if width < SIDE_BY_SIDE_WIDTH or height < MIN_HEIGHT or len(title) > width - 2:
        return None
    tree = width * TREE_PERCENT // 100
    detail = width - tree
    header = [
        (" ", "header"),
        ("modelbrowse  ", "header_title"),
        (label, "header_name"),
        ("  ", "header"),
        (LOADING_TORCH, "header_loading"),
        (" " * (width - 1 - len(title)), "header"),
    ]
    rows = [header, _border("╭", "╮", tree, detail)]
    rows.append(
        [
            ("│", "tree_border"),
            ("▶ ", "tree"),
            (LOADING, "tree_cursor"),
            (" " * (tree - 4 - len(LOADING)), "tree"),
            ("│", "tree_border"),
            ("│", "detail_border"),
            (" ", "detail"),
            (LOADING, "detail_loading"),
            (" " * (detail - 3 - len(LOADING)), "detail"),
            ("│", "detail_border"),
        ]
    )
    empty = [
        ("│", "tree_border"),
        (" " * (tree - 2), "tree"),
        ("│", "tree_border"),
        ("│", "detail_border"),
        (" " * (detail - 2), "detail"),
        ("│", "detail_border"),
    ]
    rows += [empty] * (height - 6)
    rows += [_border("╰", "╯", tree, detail), [(" " * width, "status")], _footer(width)]
    return rows


def _border(left: str, right: str, tree: int, detail: int) -> list[Run]:
    return [
        (left + "─" * (tree - 2) + right, "tree_border"),
        (left + "─" * (detail - 2) + right, "detail_border"),
    ]


def _footer(width: int) -> list[Run]:
    """The keys as `KeyFooter._fit` lays them out (widgets/key_footer.py): spaced, then closer,
    then without the palette's word, then without the keys that do not fit, `?` always kept;
    the palette key at the right."""
    palette_key, palette_word = PALETTE_KEY
    spaced = [(f" {key} ", f"{words} ") for key, words in FOOTER_KEYS]
    close = [(f" {key}", f" {words}") for key, words in FOOTER_KEYS]
    described, mark = f" {palette_word} ", len(palette_key) + 1

    def size(pieces: list[tuple[str, str]]) -> int:
        return sum(len(key) + len(words) for key, words in pieces)

    for pieces, rest in ((spaced, described), (close, described), (close, " ")):
        if size(pieces) + mark + len(rest) <= width:
            break
    else:
        pinned = [piece for piece in close if piece[0].strip() == "?"]
        room = width - mark - len(described) - size(pinned)
        kept: list[tuple[str, str]] = []
        for piece in close:
            if piece not in pinned:
                if size([*kept, piece]) > room:
                    break
                kept.append(piece)
        pieces, rest = [p for p in close if p in kept or p in pinned], described
    tail = [("▏", "footer_separator"), (palette_key, "footer_key"), (rest, "footer_text")]
    room = max(width - mark - len(rest), 0)
    line: list[Run] = []
    used = 0
    for key, words in pieces:
        for text, style in ((key, "footer_key"), (words, "footer_text")):
            cut = text[: max(room - used, 0)]
            if cut:
                line.append((cut, style))
                used += len(cut)
    line.append((" " * (room - used), "footer_text"))
    return line + tail


def color_system(env: Mapping[str, str]) -> str | None:
    """The colours Textual will use in this terminal, as Rich decides them; None for none."""
    forced = env.get("TEXTUAL_COLOR_SYSTEM", "auto")
    if forced != "auto":
        return forced if forced in SGR else None
    if env.get("COLORTERM", "").strip().lower() in ("truecolor", "24bit"):
        return "truecolor"
    term = env.get("TERM", "").strip().lower()
    if term in ("", "dumb", "unknown"):
        return None
    colors = term.rpartition("-")[2]
    return {"kitty": "256", "256color": "256"}.get(colors, "standard")


def escape_codes(frame: list[list[Run]], system: str) -> str:
    """The frame as one write: the alternate screen, the cursor hidden, each row in place."""
    styles = SGR[system]
    out = [ENTER_ALT_SCREEN, "\x1b[?25l", "\x1b[?7l"]
    for y, row in enumerate(frame, start=1):
        out.append(f"\x1b[{y};1H")
        out += [f"\x1b[0;{styles[style]}m{text}" for text, style in row if text]
    out.append("\x1b[0m")
    return "".join(out)


class Splash:
    """The painted frame and the terminal settings it changed, until Textual takes over."""

    def __init__(self, stream: IO[str], saved_modes: list[Any] | None) -> None:
        self.stream = stream
        self.saved_modes = saved_modes
        self.handed_over = False

    def hand_over(self) -> None:
        """Textual's driver is starting: give the terminal its own settings back first, so
        that the driver saves (and restores on leaving) the user's, not the splash's."""
        self.restore_modes()
        self.handed_over = True

    def restore_modes(self) -> None:
        if self.saved_modes is None:
            return
        import termios

        with contextlib.suppress(termios.error, OSError, ValueError):
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, self.saved_modes)
        self.saved_modes = None

    def close(self) -> None:
        """The app did not start (an error, ctrl+c): leave the frame as the app would."""
        if self.handed_over:
            return
        self.restore_modes()
        try:
            self.stream.write(f"\x1b[0m\x1b[?7h\x1b[?25h{LEAVE_ALT_SCREEN}")
            self.stream.flush()
        except (OSError, ValueError):
            pass


def paint(
    label: str, *, env: Mapping[str, str] = os.environ, stream: IO[str] = sys.stdout
) -> Splash | None:
    """Paint the first frame now, where the terminal and the settings allow; None otherwise."""
    system = color_system(env)
    if os.name != "posix" or system is None or "NO_COLOR" in env or env.get("TEXTUAL_FILTERS"):
        return None
    if not (label.isascii() and label.isprintable()):
        return None  # wide or control characters: Textual measures and escapes those
    try:
        width, height = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return None
    frame = first_frame(width, height, label)
    if frame is None:
        return None
    splash = Splash(stream, _quiet_input())
    try:
        stream.write(escape_codes(frame, system))
        stream.flush()
    except (OSError, ValueError):
        splash.close()
        return None
    return splash


def _quiet_input() -> list[Any] | None:
    """Stop the terminal echoing keys over the frame (they stay queued for the app); the
    settings before, to restore."""
    try:
        import termios
    except ImportError:  # not a POSIX terminal
        return None
    try:
        fd = sys.stdin.fileno()
        saved: list[Any] = termios.tcgetattr(fd)
        quiet = termios.tcgetattr(fd)
        quiet[3] &= ~(termios.ECHO | termios.ICANON)
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (OSError, ValueError, termios.error):
        return None
    return saved
