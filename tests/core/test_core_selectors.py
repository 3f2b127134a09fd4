"""Selectors: globs, names, regular expressions, classes and all-linear, as PEFT reads them."""

from __future__ import annotations

import pytest
import torchvision
from torch import nn

from modelbrowse.core.index import NodeIndex
from modelbrowse.core.selectors import SelectorError, select
from modelbrowse.tui.cli import main


@pytest.fixture(scope="module")
def alexnet_index(alexnet: nn.Module) -> NodeIndex:
    return NodeIndex(alexnet)


@pytest.mark.parametrize(
    ("pattern", "paths"),
    [
        ("classifier.*", [f"classifier.{i}" for i in range(7)]),
        ("*.1", ["features.1", "classifier.1"]),
        ("1", ["features.1", "classifier.1"]),  # PEFT: the name or its last parts
        ("features.10", ["features.10"]),
        (r"re:classifier\.[14]", ["classifier.1", "classifier.4"]),
        ("cls:Linear", ["classifier.1", "classifier.4", "classifier.6"]),
        ("cls:nn.Dropout", ["classifier.0", "classifier.3"]),
        ("all-linear", ["classifier.1", "classifier.4"]),  # not the output layer
        ("nothing", []),
    ],
)
def test_what_a_pattern_hits(alexnet_index: NodeIndex, pattern: str, paths: list[str]) -> None:
    assert select(alexnet_index, pattern).paths == paths


def test_counts_and_the_target_modules_list(alexnet_index: NodeIndex) -> None:
    selection = select(alexnet_index, "cls:Linear")
    assert selection.params == 58_631_144
    assert selection.summary() == "cls:Linear: 3 modules, 58,631,144 parameters"
    # "1", "4", "6" would also hit features.1 and features.4: the full paths are exact.
    assert selection.target_modules(alexnet_index) == [
        "classifier.1",
        "classifier.4",
        "classifier.6",
    ]
    vit = NodeIndex(torchvision.models.vit_b_16())
    assert select(vit, "out_proj").target_modules(vit) == ["out_proj"]
    nested = select(alexnet_index, "classifier*")  # classifier and its children: counted once
    assert nested.params == select(alexnet_index, "classifier").params


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("", "an empty selector"), ("re:[", "not a regular expression: unterminated")],
)
def test_bad_selectors_are_one_line(alexnet_index: NodeIndex, pattern: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message):
        select(alexnet_index, pattern)


def test_print_select_lists_the_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alexnet", "--print", "--select", "all-linear"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "classifier.1  Linear  37.8M",
        "classifier.4  Linear  16.8M",
        "",
        "all-linear: 2 modules, 54,534,144 parameters",
        "target_modules=['classifier.1', 'classifier.4']",
    ]
