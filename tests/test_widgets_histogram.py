"""The detail pane's histogram: bars stretched to the pane, the mean and zero marked."""

from __future__ import annotations

from rich.console import Console

from modelbrowse.widgets.detail_pane import Histogram


def render(histogram: Histogram, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(histogram)
    return console.export_text().rstrip("\n").split("\n")


def test_bars_fill_the_width_and_marks_fall_where_the_values_are() -> None:
    bars, marks = render(Histogram((1, 2, 4, 8), -1.0, 3.0, 1.5), width=16)
    assert bars == "▁▁▁▁▂▂▂▂▄▄▄▄████"
    assert marks.index("0") == 4  # zero is a quarter of the way from -1 to 3
    assert marks.index("μ") == 10


def test_marks_outside_the_range_are_left_out_and_width_is_capped() -> None:
    bars, marks = render(Histogram((3, 1), 1.0, 2.0, float("nan")), width=80)
    assert len(bars.rstrip()) == 8  # at most four columns a bin
    assert marks.strip() == ""
