"""The footer: the screen's keys on one line, drawn by one widget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widget import Widget

DISABLED = Style(dim=True)


@dataclass(frozen=True, slots=True)
class FooterEntry:
    """One key as the footer shows it."""

    key: str  # what pressing it sends
    display: str  # how it is written, after the user's keymap (`^q`)
    description: str
    action: str
    enabled: bool
    tooltip: str


Span = tuple[int, int, FooterEntry]  # the cells a key takes, from and to
Piece = tuple[FooterEntry, str, str]  # a key as drawn: the entry, its key and its words
# Kept when keys are left out for want of room: it lists them all.
PINNED = frozenset({"help"})


def _width(pieces: list[Piece]) -> int:
    return sum(len(key) + len(rest) for _, key, rest in pieces)


class KeyFooter(Widget):
    """The keys of the screen's bindings, as Textual's Footer shows them, drawn as one line.

    Textual's Footer mounts a widget for each key and composes them all again on every bindings
    signal: at start-up that was 60 ms of the first frame, and every dialog opened or closed
    over the screen composed the same line again (30 to 50 ms). Here a change of keys repaints
    one line. While a dialog is up only the palette key is shown, as in Textual's. A narrow
    terminal gets whole keys, never a cut one, and always the help key (`_fit`). A click on a
    key presses it; a disabled key rings the bell.
    """

    ALLOW_SELECT = False
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "key-footer--key",
        "key-footer--description",
        "key-footer--separator",
        "key-footer--hover",
        "key-footer--note",
    }
    DEFAULT_CSS: ClassVar[str] = """
    KeyFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        .key-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .key-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        .key-footer--separator {
            color: $foreground 20%;
        }
        .key-footer--hover {
            background: $block-hover-background;
        }
        .key-footer--note {
            color: $text-warning;
            text-style: bold;
        }
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.entries: tuple[FooterEntry, ...] = ()
        self.palette: FooterEntry | None = None
        self.dialog_up = False
        self.note = ""
        self._spans: list[Span] = []
        self._hover: FooterEntry | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def entry(self, action: str) -> FooterEntry | None:
        """The shown key for `action`, if any."""
        return next((e for e in self.entries if e.action == action), None)

    def show_note(self, note: str) -> None:
        """A few words before the keys (what they act on: an armed selection); "" for none."""
        if note != self.note:
            self.note = note
            self.refresh()

    def bindings_changed(self, screen: Screen[Any]) -> None:
        app = screen.app
        if not app.app_focus or not self.is_attached or screen is not self.screen:
            return  # as Textual's Footer: the keys stay while the terminal has no focus
        dialog_up = app.screen is not screen
        entries, palette = (self.entries, self.palette) if dialog_up else self._read(screen)
        if (entries, palette, dialog_up) != (self.entries, self.palette, self.dialog_up):
            self.entries, self.palette, self.dialog_up = entries, palette, dialog_up
            self.refresh()

    def _read(self, screen: Screen[Any]) -> tuple[tuple[FooterEntry, ...], FooterEntry | None]:
        app = screen.app
        active = screen.active_bindings
        entries: dict[str, FooterEntry] = {}  # one key per action, the first, as Textual's
        for _, binding, enabled, tooltip in active.values():
            if binding.show and binding.action not in entries:
                entries[binding.action] = FooterEntry(
                    binding.key,
                    app.get_key_display(binding),
                    binding.description,
                    binding.action,
                    enabled,
                    tooltip,
                )
        palette = None
        if app.ENABLE_COMMAND_PALETTE and app.COMMAND_PALETTE_BINDING in active:
            _, binding, enabled, tooltip = active[app.COMMAND_PALETTE_BINDING]
            palette = FooterEntry(
                binding.key,
                app.get_key_display(binding),
                binding.description,
                binding.action,
                enabled,
                binding.tooltip or binding.description,
            )
        return tuple(entries.values()), palette

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-footer--key")
        description_style = self.get_component_rich_style("key-footer--description")
        hover_style = self.get_component_rich_style("key-footer--hover")

        def put(text: Text, spans: list[Span], entry: FooterEntry, key: str, rest: str) -> None:
            extra = Style.combine(
                [
                    DISABLED if not entry.enabled else Style(),
                    hover_style if entry == self._hover else Style(),
                ]
            )
            start = text.cell_len
            text.append(key, key_style + extra)
            text.append(rest, description_style + extra)
            spans.append((start, text.cell_len, entry))

        line, keys = Text(no_wrap=True, overflow="crop", end=""), list[Span]()
        if self.note and not self.dialog_up:
            line.append(f" {self.note} ", self.get_component_rich_style("key-footer--note"))
        pieces, palette_rest = self._fit(self.size.width - line.cell_len)
        for entry, key, rest in pieces:
            put(line, keys, entry, key, rest)
        tail, tail_keys = Text(end=""), list[Span]()
        if self.palette is not None:
            tail.append("▏", self.get_component_rich_style("key-footer--separator"))
            put(tail, tail_keys, self.palette, self.palette.display, palette_rest)
        room = max(self.size.width - tail.cell_len, 0)
        line.truncate(room, pad=True)
        self._spans = [span for span in keys if span[1] <= room]
        self._spans += [(room + start, room + end, entry) for start, end, entry in tail_keys]
        return line + tail

    def _fit(self, width: int) -> tuple[list[Piece], str]:
        """The keys as they fit `width`: spaced, then closer, then without the palette's word,
        then without the keys that do not fit; the help key and the palette key always stay."""
        if self.dialog_up:
            return [], f" {self.palette.description} " if self.palette else ""
        spaced = [(e, f" {e.display} ", f"{e.description} ") for e in self.entries]
        close = [(e, f" {e.display}", f" {e.description}") for e in self.entries]
        palette = self.palette
        described = f" {palette.description} " if palette is not None else ""
        bare = " " if palette is not None else ""
        mark = len(palette.display) + 1 if palette is not None else 0  # `▏^p`
        for pieces, rest in ((spaced, described), (close, described), (close, bare)):
            if _width(pieces) + mark + len(rest) <= width:
                return pieces, rest
        # Keys are left out from the end, then: the palette's word is worth more than one.
        pinned = [p for p in close if p[0].action in PINNED]
        room = width - mark - len(described) - _width(pinned)
        kept: list[Piece] = []
        for piece in close:
            if piece not in pinned:
                if _width([*kept, piece]) > room:
                    break
                kept.append(piece)
        return [p for p in close if p in kept or p in pinned], described

    def _at(self, x: int) -> FooterEntry | None:
        return next((entry for start, end, entry in self._spans if start <= x < end), None)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        entry = self._at(event.x)
        if entry != self._hover:
            self._hover = entry
            self.tooltip = (entry.tooltip or None) if entry is not None else None
            self.refresh()

    def on_leave(self, event: events.Leave) -> None:
        if self._hover is not None:
            self._hover = None
            self.refresh()

    def on_mouse_down(self, event: events.MouseDown) -> None:
        entry = self._at(event.x)
        if entry is None:
            return
        if entry.enabled:
            self.app.simulate_key(entry.key)
        else:
            self.app.bell()
