"""The health check's scan: NaN and Inf, constant tensors, norms at init, duplicates, ties."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from modelbrowse.core import health, health_scan
from modelbrowse.core.health import Finding, check_source, scan_tensor
from modelbrowse.core.health_text import report_notes, report_text
from modelbrowse.core.sources.base import Source, resolve_source
from tests.fixtures.models import SharedNet


def instance_source(model: nn.Module) -> Source:
    return Source(spec="test", kind="import", label="test", builder=lambda: model, instance=model)


def kinds(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.kind, f.key) for f in findings]


def test_nan_and_inf_are_counted_across_slices_with_the_first_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health_scan, "SCAN_ELEMENTS", 5)
    values = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    values[3, 5] = float("nan")
    values[2, 1] = float("-inf")
    values[0, 4] = float("nan")
    scan = scan_tensor(values)
    assert (scan.numel, scan.nan, scan.inf, scan.first_bad, scan.value) == (24, 2, 1, (0, 4), None)


def test_one_value_throughout_is_found_across_slices_in_any_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health_scan, "SCAN_ELEMENTS", 3)
    assert scan_tensor(torch.ones(20, dtype=torch.bfloat16)).value == 1.0
    almost = torch.ones(20)
    almost[19] = 2
    assert scan_tensor(almost).value is None
    assert scan_tensor(torch.zeros(7, dtype=torch.int64)).floating is False
    assert scan_tensor(torch.full((2, 3), float("nan"))).value is None  # NaN is not equal to NaN


def test_a_sum_that_overflows_is_no_inf() -> None:
    scan = scan_tensor(torch.tensor([3e38, 3e38, 1.0]))
    assert (scan.nan, scan.inf, scan.first_bad) == (0, 0, None)


def test_the_sample_is_of_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health_scan, "SCAN_ELEMENTS", 4)
    values = torch.randn(3, 5, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    again = values.clone()
    assert scan_tensor(values, sample=True).sample == scan_tensor(again, sample=True).sample
    again[2, 4] += 1
    assert scan_tensor(values, sample=True).sample != scan_tensor(again, sample=True).sample
    transposed = values.t()  # read in its logical order, as a copy
    assert (
        scan_tensor(transposed, sample=True).sample
        == scan_tensor(transposed.contiguous(), sample=True).sample
    )
    assert scan_tensor(values).sample is None


def test_ties_in_a_model_are_one_tensor_not_duplicates() -> None:
    report = check_source(instance_source(SharedNet()))
    # embed/head and encoder/decoder.proj are one tensor each: scanned under every name.
    assert report.scanned == 7
    assert [(f.kind, f.key, f.text) for f in report.findings] == [
        ("constant", "scale", "all 8 values are 1")
    ]
    assert report.notes == []  # ties are objects in a built model: nothing to check


def test_a_nan_in_a_tied_weight_is_one_finding_under_its_first_name() -> None:
    model = SharedNet()
    model.get_parameter("embed.weight").data[2, 3] = float("inf")
    report = check_source(instance_source(model))
    assert [(f.kind, f.key, f.numbers) for f in report.findings] == [
        ("constant", "scale", {"numel": 8, "value": 1.0}),  # the root's buffer comes first
        ("nonfinite", "embed.weight", {"nan": 0, "inf": 1, "numel": 80, "first_index": [2, 3]}),
    ]


def test_a_batch_norm_at_init_is_one_finding_told_by_its_class() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    report = check_source(instance_source(model))
    assert report.scanned == 9
    assert [(f.kind, f.key, f.numbers) for f in report.findings] == [
        ("norm_init", "1", {"weight": 4, "bias": 4})
    ]
    assert report.findings[0].text == (
        "weight all 1 (4 values), bias all 0 (4 values): as initialised, "
        "a problem only in a trained checkpoint"
    )
    model.get_parameter("1.weight").data[0] = 0.5  # trained: its statistics are its own
    assert kinds(check_source(instance_source(model)).findings) == [
        ("zero", "1.bias"),
        ("zero", "1.running_mean"),
        ("constant", "1.running_var"),
    ]


def test_an_rms_norm_is_told_by_its_name_in_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "rms.pt"
    torch.manual_seed(0)
    state = OrderedDict(
        [
            ("layers.0.input_layernorm.weight", torch.ones(6)),
            ("layers.0.mlp.weight", torch.randn(6, 6)),
            ("ln_f.weight", torch.ones(6)),
            ("ln_f.bias", torch.full((6,), 0.1)),  # trained: only its weight is constant
        ]
    )
    torch.save(state, path)
    report = check_source(resolve_source(str(path)))
    assert [(f.kind, f.key) for f in report.findings] == [
        ("constant", "ln_f.weight"),
        ("constant", "ln_f.bias"),
        ("norm_init", "layers.0.input_layernorm"),
    ]
    assert report.findings[2].numbers == {"weight": 6, "bias": 0}
    assert report_notes(report) == ["ties not checked: no architecture (--arch SOURCE names one)"]


def test_equal_bytes_in_two_storages_are_one_duplicate_finding(tmp_path: Path) -> None:
    path = tmp_path / "twice.pt"
    torch.manual_seed(0)
    shared = torch.randn(4, 3)
    state = {"a": torch.randn(4, 3), "b": shared, "c": shared.clone(), "view": shared[:]}
    state["d"] = shared.clone()
    torch.save(state, path)
    report = check_source(resolve_source(str(path)))
    assert report.scanned == 5
    assert [(f.kind, f.key, f.numbers) for f in report.findings] == [
        ("duplicate", "b", {"keys": ["b", "c", "d"], "numel": 12, "dtype": "float32"})
    ]
    assert report_text(report) == (
        "duplicate  b: the same 12 float32 values stored again under c, d\n"
        "1 problem found in 5 tensors\n"
    )


def test_tensors_that_differ_outside_the_sample_are_no_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "near.pt"
    torch.manual_seed(0)
    first = torch.randn(10_000)
    near = first.clone()
    near[100] += 1  # bytes 400-403: between the first two sampled runs
    assert scan_tensor(first, sample=True).sample == scan_tensor(near, sample=True).sample
    assert health_scan.full_digest(first) != health_scan.full_digest(near)
    torch.save({"first": first, "near": near, "again": first.clone()}, path)
    report = check_source(resolve_source(str(path)))
    assert [(f.kind, f.key, f.numbers["keys"]) for f in report.findings] == [
        ("duplicate", "first", ["first", "again"])
    ]


def write_broken_tie(path: Path) -> None:
    """SharedNet's weights with `head.weight`, tied to `embed.weight`, stored apart and
    changed in one place."""
    state = SharedNet().state_dict()
    state["embed.weight"] = torch.arange(80, dtype=torch.float32).reshape(10, 8)
    state["head.weight"] = state["embed.weight"].clone()
    state["head.weight"][3, 2] = -58.0  # 26 in the embedding
    torch.save(state, path)


def test_a_tie_the_architecture_makes_that_the_file_breaks(
    tmp_path: Path, models_file: Path
) -> None:
    path = tmp_path / "shared.pt"
    write_broken_tie(path)
    report = check_source(resolve_source(str(path), arch=f"{models_file}:SharedNet"))
    broken = [f for f in report.findings if f.kind == "tie_broken"]
    assert [(f.key, f.numbers, f.text) for f in broken] == [
        (
            "embed.weight",
            {"keys": ["embed.weight", "head.weight"], "max_abs_diff": 84.0},
            "tied to head.weight in the architecture but different in the file: "
            "largest difference 84",
        )
    ]
    assert report.notes == []
    # Equal, they are a tie stored twice: neither broken nor a duplicate.
    state = torch.load(path)
    state["head.weight"] = state["embed.weight"].clone()
    torch.save(state, path)
    report = check_source(resolve_source(str(path), arch=f"{models_file}:SharedNet"))
    assert [f.kind for f in report.findings] == ["constant"]  # SharedNet's scale buffer


def test_a_check_asked_to_stop_stops_before_the_next_tensor() -> None:
    asked: list[int] = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(health.CheckCancelled):
        check_source(instance_source(SharedNet()), cancelled=cancelled)
    assert len(asked) == 4  # three tensors scanned, then it stopped
