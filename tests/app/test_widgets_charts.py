"""The detail pane's charts: the histogram of values and the parameters by child."""

from __future__ import annotations

from rich.console import Console

from modelbrowse.widgets.charts import Histogram


def render(histogram: object, width: int) -> list[str]:
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


def test_parameters_by_child_are_bars_scaled_to_the_largest() -> None:
    import torchvision

    from modelbrowse.core.index import NodeIndex
    from modelbrowse.widgets.charts import children_chart

    index = NodeIndex(torchvision.models.alexnet())
    chart = children_chart(index, index.node("features"))
    assert chart is not None
    lines = [line.rstrip() for line in render(chart, width=60)]
    assert lines[8] == "8  ████████████████████ 885.0K"  # the largest: the full width
    assert lines[3] == "3  ███████              307.4K"
    assert lines[1] == "1                            0"
    assert children_chart(index, index.node("features.0")) is None  # no child modules
