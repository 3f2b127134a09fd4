"""The meta build: initialisers skipped on meta tensors only, and put back afterwards."""

from __future__ import annotations

import gc
import threading

import torch
from torch import nn
from torch.nn import init

from modelbrowse.core.sources.meta_build import INITIALISERS, on_meta, skip_init_on_meta


def test_meta_tensors_are_left_alone_and_real_ones_initialised() -> None:
    originals = {name: getattr(init, name) for name in INITIALISERS}
    with on_meta():
        layer = nn.Linear(4, 3)
        real = torch.zeros(3, 4, device="cpu")
        init.ones_(real)  # a builder computing on a real tensor still gets its values
        assert not gc.isenabled()
    assert layer.weight.is_meta and layer.weight.shape == (3, 4)
    assert torch.equal(real, torch.ones(3, 4))
    assert gc.isenabled()
    assert {name: getattr(init, name) for name in INITIALISERS} == originals


def test_nested_and_concurrent_blocks_restore_the_initialisers_once_all_end() -> None:
    original = init.kaiming_uniform_
    inside = threading.Event()
    release = threading.Event()

    def other_build() -> None:
        with skip_init_on_meta():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_build)
    thread.start()
    inside.wait(10)
    with skip_init_on_meta():
        assert init.kaiming_uniform_ is not original
    assert init.kaiming_uniform_ is not original  # the other block is still open
    release.set()
    thread.join()
    assert init.kaiming_uniform_ is original


def test_a_model_built_on_meta_has_the_shapes_of_the_real_one() -> None:
    with on_meta():
        meta = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.LSTM(8, 4))
    real = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.LSTM(8, 4))
    shapes = {k: (v.shape, v.dtype) for k, v in real.state_dict().items()}
    assert {k: (v.shape, v.dtype) for k, v in meta.state_dict().items()} == shapes
    assert all(v.is_meta for v in meta.state_dict().values())


def test_registering_on_meta_acts_only_on_the_building_thread() -> None:
    from modelbrowse.core.sources.base import _parameters_on_meta

    elsewhere: list[nn.Linear] = []
    with _parameters_on_meta():
        shared = nn.Parameter(torch.ones(2))
        tied = nn.Module()
        tied.register_parameter("a", shared)
        tied.register_parameter("b", shared)
        built = nn.Linear(4, 3)
        other = threading.Thread(target=lambda: elsewhere.append(nn.Linear(4, 3)))
        other.start()
        other.join()
    assert built.weight.is_meta and built.bias is not None and built.bias.is_meta
    assert tied.a is tied.b and tied.a.is_meta  # a tie stays one object
    assert not elsewhere[0].weight.is_meta  # the UI thread's modules stay real
    assert not nn.Linear(4, 3).weight.is_meta  # and nothing is left behind
