"""Text that fits its width: wrapped at separators (never inside a number), cut to a number of
lines with a pointer to where the rest is, or laid out another way when a table is too wide."""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.text import Text

# A line may end after one of these: paths, dotted names, arguments and messages break here.
BREAK_AFTER = frozenset(" ,.;:=/\\_)]}|·")
# ... and no line starts with one of these: they belong to what is before them.
NO_LINE_START = frozenset("·…,;:)]}")


def _breaks(line: str) -> list[int]:
    """The offsets a line may be broken at (the next line starts there). A separator between
    two digits holds its number together, and a space keeps a number with its unit."""
    found = []
    for i, char in enumerate(line[:-1]):
        if char not in BREAK_AFTER:
            continue
        if line[i - 1 : i].isdigit() and (
            line[i + 1].isdigit() if char != " " else line[i + 1].isalpha()
        ):
            continue  # `61,100,840`, `0.5`, `233.1 MiB`
        if line[i + 1] != " " and line[i + 1] not in NO_LINE_START:
            found.append(i + 1)  # a run of spaces breaks after its last space
    return found


def wrap_offsets(line: str, width: int) -> list[int]:
    """Where to cut one line of text so that no piece is wider than `width` (in characters);
    pieces end at separators where they can, and are cut hard only where a word is longer."""
    width = max(width, 1)
    cuts: list[int] = []
    breaks = _breaks(line)
    start = 0
    while len(line.rstrip(" ")) - start > width:
        fitting = [b for b in breaks if start < b and len(line[start:b].rstrip(" ")) <= width]
        # Between words rather than inside a name, unless that leaves most of the line empty.
        spaced = [b for b in fitting if line[b - 1] == " " and b - start > width // 3]
        cut = spaced[-1] if spaced else fitting[-1] if fitting else start + width
        cuts.append(cut)
        start = cut
    return cuts


def wrap_text(text: Text, width: int) -> list[Text]:
    """`text` as lines no wider than `width`, broken at separators, styles kept."""
    lines: list[Text] = []
    for line in text.split("\n", allow_blank=True):
        for piece in line.divide(wrap_offsets(line.plain, width)):
            piece.rstrip()
            lines.append(piece)
    return lines


def _longest_word(text: str) -> int:
    longest = 0
    for line in text.split("\n"):
        start = 0
        for cut in [*_breaks(line), len(line)]:
            longest = max(longest, len(line[start:cut].rstrip(" ")))
            start = cut
    return longest


class Wrapped:
    """A Text that wraps at separators instead of inside a word or a number."""

    def __init__(self, text: Text | str) -> None:
        self.text = text if isinstance(text, Text) else Text(text)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = wrap_text(self.text, options.max_width)
        yield Text("\n").join(lines) if lines else Text("")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        plain = self.text.plain
        widest = max((len(line) for line in plain.split("\n")), default=0)
        return Measurement(min(_longest_word(plain), widest), widest).clamp(
            max_width=options.max_width
        )


def capped_lines(text: Text, width: int, most: int, pointer: str) -> tuple[list[Text], bool]:
    """At most `most` lines of `text`; when some are left out, the last line ends in `pointer`
    (where the whole text is). Returns the lines and whether any were left out."""
    lines = wrap_text(text, width)
    if len(lines) <= most:
        return lines, False
    kept = lines[:most]
    room = max(width - len(pointer), 0)
    last = wrap_text(Text(" ").join(lines[most - 1 :]), room)[0]
    last.append(pointer, style="italic")
    kept[-1] = last
    return kept, True


class Fitted:
    """`wide` (a table) when it fits the width, else `narrow` (the same rows laid out for a
    narrow pane), so that no cell is shortened."""

    def __init__(self, wide: RenderableType, narrow: RenderableType) -> None:
        self.wide = wide
        self.narrow = narrow

    def _choice(self, console: Console, options: ConsoleOptions) -> RenderableType:
        needed = Measurement.get(console, options.update_width(10_000), self.wide).maximum
        return self.wide if needed <= options.max_width else self.narrow

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._choice(console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self._choice(console, options))
