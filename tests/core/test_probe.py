"""The probe's core: statistics from hooks on a real model and on the tiny models planted with
a NaN, an unused branch and a shared layer; the backward pass; cancelling; memory."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch
from torch import nn

from modelbrowse.core.probe import ProbeCancelled, ProbeError, probe_table, run_probe
from modelbrowse.core.probe.tensor_stats import tensor_stats
from tests.fixtures.models import NanInThird, SharedNet, UnusedBranch

RELUS = ("features.1", "features.4", "features.7", "features.9", "features.11")
CLASSIFIER_RELUS = ("classifier.2", "classifier.5")


def test_alexnet_shapes_order_and_dead_units(alexnet: nn.Module) -> None:
    alexnet.train()  # a mode the probe must leave as it found it
    result = run_probe(
        alexnet, [torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))]
    )
    assert alexnet.training and all(m.training for m in alexnet.modules())
    out = result.outputs
    assert out["features.0"].shape == (4, 64, 55, 55)
    assert out["features.12"].shape == (4, 256, 6, 6)
    assert out["classifier.1"].shape == (4, 4096)
    assert out[""].shape == out["classifier.6"].shape == (4, 1000)
    assert out[""].dtype == "float32"
    # Execution order: the root first, then each layer in turn.
    assert out[""].order == 0 and out["features"].order == 1 and out["features.0"].order == 2
    assert [out[f"classifier.{i}"].order for i in range(7)] == list(range(17, 24))
    for path in RELUS + CLASSIFIER_RELUS:
        dead = out[path].dead
        assert dead is not None and 0.0 <= dead < 0.9, path
        assert 0.3 < out[path].zeros < 0.7, path  # about half of a random pre-activation
    # A convolution's channel is positive somewhere among 4x55x55 places; a Linear unit sees
    # 4 samples of noise whose features, through random weights, are nearly alike: about half
    # of the units are negative for all four.
    assert out["features.1"].dead == 0.0
    assert 0.3 < out["classifier.2"].dead < 0.6  # type: ignore[operator]
    assert all(out[p].dead is None for p in ("features.0", "features.2", "classifier.1", ""))
    # The inplace ReLU overwrote features.0's output after its hook took the statistics.
    assert out["features.0"].zeros == 0.0 and out["features.0"].mean < out["features.1"].mean
    assert result.first_bad is None and result.first_bad_inputs == ()
    assert sum(out[""].histogram) == 4 * 1000 and out[""].low <= out[""].high
    assert not result.backward and result.loss is None and result.grads == {}


def test_the_nan_planted_in_the_third_layer_is_found_there() -> None:
    model = NanInThird()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    result = run_probe(model, [x])
    assert result.first_bad == "fc2"
    assert result.outputs["fc2"].nan == 3  # column 0 of each of 3 rows
    assert [p for p, s in result.outputs.items() if s.bad] == ["", "fc2", "act2", "head"]
    assert not result.outputs["act1"].bad and not result.outputs["fc1"].bad
    (given,) = result.first_bad_inputs
    clean = result.outputs["act1"]  # what went into fc2
    assert (given.shape, given.nan, given.inf) == ((3, 8), 0, 0)
    assert (given.mean, given.zeros, given.absmax) == (clean.mean, clean.zeros, clean.absmax)


def test_an_inplace_producer_names_its_inputs_as_they_were() -> None:
    class Logs(nn.Module):
        inplace = True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.log_()

    model = nn.Sequential(nn.Identity(), Logs())
    result = run_probe(model, [torch.tensor([[-1.0, 2.0]])])
    assert result.first_bad == "1"
    (given,) = result.first_bad_inputs
    assert (given.nan, given.mean) == (0, 0.5)


def test_backward_lists_exactly_the_unused_branch() -> None:
    model = UnusedBranch()
    head = model.head.weight
    before = torch.ones_like(head)
    head.grad = before
    result = run_probe(model, [torch.randn(3, 4)], backward=True)
    assert result.no_grad == ("aux.0.weight", "aux.0.bias", "aux.2.weight", "aux.2.bias")
    assert set(result.grads) == {"trunk.weight", "trunk.bias", "head.weight", "head.bias"}
    assert result.loss is not None and result.loss_kind == "sum of the output"
    grad = result.grads["head.bias"]
    assert grad.norm == pytest.approx(3 * 2**0.5)  # d(sum)/d(bias): 3 rows, 2 outputs
    assert grad.ratio == pytest.approx(grad.norm / float(model.head.bias.detach().norm()))
    # The grads are as they were: the one set before, None elsewhere.
    assert head.grad is before
    assert all(p.grad is None for n, p in model.named_parameters() if n != "head.weight")
    assert set(result.outputs) == {"", "trunk", "head"}


def test_cross_entropy_against_a_target() -> None:
    model = nn.Linear(4, 3)
    x = torch.randn(5, 4)
    target = torch.tensor([0, 1, 2, 0, 1])
    result = run_probe(model, [x], backward=True, target=target)
    expected = nn.functional.cross_entropy(model(x), target)
    assert result.loss == pytest.approx(float(expected.detach()))
    assert result.loss_kind == "cross-entropy against the target"
    with pytest.raises(ProbeError, match=r"target's shape 4 does not fit the output's 5x3"):
        run_probe(model, [x], backward=True, target=target[:4])


def test_a_shared_module_keeps_its_first_call_and_counts_them() -> None:
    model = SharedNet()
    result = run_probe(model, [torch.tensor([[1, 2, 3]])])
    # `encoder` is `decoder.proj`: called twice, listed under both of its paths.
    assert result.outputs["encoder"] is result.outputs["decoder.proj"]
    assert result.outputs["encoder"].calls == 2
    assert result.outputs["encoder"].order == 2  # after the root and embed


def test_train_mode_leaves_running_statistics_and_modes_as_they_were() -> None:
    norm = nn.BatchNorm2d(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), norm, nn.Dropout(0.5)).eval()
    assert norm.running_mean is not None and norm.num_batches_tracked is not None
    running = norm.running_mean.clone()
    result = run_probe(model, [torch.randn(2, 3, 8, 8)], train=True)
    assert result.train and result.outputs["2"].zeros > 0.2  # dropout ran
    assert not any(m.training for m in model.modules())
    assert torch.equal(norm.running_mean, running)
    assert int(norm.num_batches_tracked) == 0


def test_cancelling_stops_in_a_hook_and_removes_the_hooks(alexnet: nn.Module) -> None:
    cancel = threading.Event()
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 3:
            cancel.set()

    with pytest.raises(ProbeCancelled, match="probe cancelled"):
        run_probe(alexnet, [torch.randn(1, 3, 224, 224)], progress=progress, cancel=cancel)
    assert seen == [(1, 24), (2, 24), (3, 24)]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in alexnet.modules())


def test_progress_counts_every_module_once_to_the_total() -> None:
    seen: list[tuple[int, int]] = []
    run_probe(UnusedBranch(), [torch.randn(1, 4)], progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 8), (2, 8), (3, 8), (8, 8)]  # 3 ran; the end says all are done


class _Watch(nn.Module):
    """Passes its input on (as a new tensor) and counts how many inputs seen so far are alive."""

    def __init__(self, refs: list[weakref.ref[torch.Tensor]], live: list[int]) -> None:
        super().__init__()
        self.refs, self.live = refs, live

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.refs.append(weakref.ref(x))
        self.live.append(sum(ref() is not None for ref in self.refs))
        return x * 1


def test_the_hooks_hold_no_activations() -> None:
    refs: list[weakref.ref[torch.Tensor]] = []
    live: list[int] = []
    layers: list[nn.Module] = []
    for _ in range(6):
        layers += [nn.Linear(8, 8), _Watch(refs, live)]
    model = nn.Sequential(*layers)
    result = run_probe(model, [torch.randn(2, 8)])
    # While each watch runs, only its own input is alive: nothing earlier was kept.
    assert live == [1] * 6
    gc.collect()
    assert all(ref() is None for ref in refs)
    assert len(result.outputs) == 13


def test_statistics_of_one_tensor() -> None:
    values = torch.tensor([[0.0, 1.0, float("nan")], [float("inf"), -3.0, 2.0]])
    stats = tensor_stats(values, order=5, dead_dim=1)
    assert (stats.shape, stats.dtype, stats.order) == ((2, 3), "float32", 5)
    assert (stats.nan, stats.inf, stats.zeros) == (1, 1, 1 / 6)
    assert stats.mean == 0.0 and stats.absmax == 3.0 and (stats.low, stats.high) == (-3.0, 2.0)
    assert sum(stats.histogram) == 4
    assert stats.dead == 0.0  # every column has a positive value (inf counts)
    assert tensor_stats(torch.tensor([[-1.0, 2.0], [-1.0, 0.0]]), 0, 1).dead == 0.5


def test_a_model_without_a_forward_or_on_meta_is_one_line() -> None:
    with pytest.raises(ProbeError, match="no forward to run"):
        run_probe(nn.ModuleList([nn.Linear(2, 2)]), [torch.randn(1, 2)])
    with torch.device("meta"):
        meta = nn.Linear(2, 2)
    with pytest.raises(ProbeError, match="on meta"):
        run_probe(meta, [torch.randn(1, 2)])
    with pytest.raises(ProbeError, match=r"the forward failed for input 1,3 \(float32\): "):
        run_probe(nn.Linear(2, 2), [torch.randn(1, 3)])


def test_a_list_of_layers_is_a_container_and_train_mode_repeats() -> None:
    class Stack(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Dropout(0.5)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            return x

    model, x = Stack(), torch.randn(8, 4)
    state = torch.random.get_rng_state()
    first = run_probe(model, [x], train=True)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's draws are untouched
    assert run_probe(model, [x], train=True).outputs == first.outputs
    assert first.containers == frozenset({"layers"}) and "layers" not in first.outputs
    row = next(line for line in probe_table(first).splitlines() if line.startswith("  layers "))
    assert row.split()[:2] == ["layers", "ModuleList"]
    assert row.endswith("(a container: no forward)")
