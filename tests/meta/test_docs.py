"""The docs hold together: links resolve, the README stays short, benchmarks write the table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks import HeadroomTarget, Result, Target
from benchmarks.__main__ import (
    DOCS_TABLE,
    TABLE_END,
    TABLE_START,
    markdown_table,
    replace_table,
    write_docs_table,
)

ROOT = Path(__file__).resolve().parents[2]
TOP_PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "benchmarks" / "README.md"]
PAGES = sorted([*TOP_PAGES, *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def local_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_there_are_docs_pages() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    expected = {"checkpoints", "performance", "recipe", "security", "usage"}
    assert {f"docs/{n}.md" for n in expected} <= names
    assert "CONTRIBUTING.md" in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_names_an_existing_file_and_heading(page: Path) -> None:
    broken = []
    for target in local_links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_readme_links_every_docs_page_and_stays_short() -> None:
    readme = (ROOT / "README.md").read_text()
    linked = set(local_links(ROOT / "README.md"))
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in linked, page.name
    assert "CONTRIBUTING.md" in linked
    lines = readme.count("\n")
    assert lines < 200, f"README.md has {lines} lines: reference belongs in docs/"


def test_the_slug_matches_github_for_the_headings_used() -> None:
    assert slug("Saving, and loading in training code") == "saving-and-loading-in-training-code"
    assert slug("Remapping keys, and the theme") == "remapping-keys-and-the-theme"
    assert slug("What a recipe may and may not decide") == "what-a-recipe-may-and-may-not-decide"


MACHINE: dict[str, Any] = {
    "cpu": "Test CPU",
    "cores": 4,
    "usable_cores": 2,
    "python": "3.11.7",
    "torch": "2.5.0",
    "torchvision": "0.20.0",
    "textual": "1.0.0",
}


def fake_results() -> list[Result]:
    return [
        Result("help", "--help", 0.0695, 0.045, "python -c pass", Target(2.0), runs=5),
        Result("peak_mib", "peak", 533.0, 528.0, "import", HeadroomTarget(1024), unit="MiB"),
        Result("tiny_mib", "small", 0.31, None, "", None, unit="MiB"),
        Result("slow", "slow one", 5.3, 2.0, "floor", Target(1.1), runs=3),
        Result("broken", "fails", error="timed out"),
    ]


def test_the_markdown_table_shows_each_figure_and_what_missed() -> None:
    table = markdown_table(fake_results(), MACHINE, duration_s=486.0)
    lines = table.splitlines()
    assert lines[0].startswith("Latest full run (8.1 minutes) on Test CPU, 2 cores, Python 3.11.7")
    assert "| `help` | 69.5 ms | 45.0 ms | 1.54 | ratio <= 2.0 | pass |" in lines
    assert "| `peak_mib` | 533 MiB | 528 MiB | 1.01 | <= baseline + 1024 MiB | pass |" in lines
    assert "| `tiny_mib` | 0.31 MiB | – | – | – | info |" in lines
    assert "| `slow` | 5.30 s | 2.00 s | 2.65 | ratio <= 1.1 | FAIL |" in lines
    assert "| `broken` | – | – | – | – | ERROR |" in lines
    assert lines[-1] == "Missed its target or failed in this run: `slow`, `broken`."
    assert all(len(line) <= 100 for line in lines if not line.startswith("|"))

    held = markdown_table(fake_results()[:3], MACHINE, duration_s=60.0)
    assert held.splitlines()[-1] == "Every target held in this run."


def test_writing_the_table_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    before, after = "# Performance\n\nProse before.\n\n", "\n\nProse after.\n"
    page.write_text(f"{before}{TABLE_START}\nold table\n{TABLE_END}{after}")
    table = markdown_table(fake_results()[:1], MACHINE, duration_s=60.0)

    write_docs_table(page, table)
    text = page.read_text()
    assert text == f"{before}{TABLE_START}\n{table}\n{TABLE_END}{after}"
    assert "old table" not in text
    write_docs_table(page, table)  # a second run gives the same file
    assert page.read_text() == text


def test_a_page_without_markers_is_refused_and_left_alone(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nno markers here\n")
    with pytest.raises(ValueError, match="table:start"):
        write_docs_table(page, "| table |")
    assert page.read_text() == "# Performance\n\nno markers here\n"
    with pytest.raises(ValueError):
        replace_table(f"{TABLE_END}\n{TABLE_START}\n", "| table |")


def test_the_performance_page_has_one_table_between_markers() -> None:
    text = DOCS_TABLE.read_text()
    assert text.count(TABLE_START) == 1
    assert text.count(TABLE_END) == 1
    inside = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    assert "| figure | value | baseline | ratio | target | result |" in inside
