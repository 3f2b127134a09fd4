"""Shared test set-up."""

from __future__ import annotations

import gc
import inspect
import os
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Imported before any app runs: some modules under torchvision bind `sys.stdout` when first
# imported (sympy.strategies.core), and under `run_test` that is a capture holding the app, so
# the first app of each test process, and its model, would stay alive to the end.
import torchvision
from torch import nn

FIXTURES = Path(__file__).parent / "fixtures"
MODELS_FILE = FIXTURES / "models.py"


@pytest.fixture(scope="module")
def alexnet() -> nn.Module:
    """Torchvision AlexNet from seed 0 (never downloaded weights), one per test module: a test
    that edits it undoes its edits."""
    torch.manual_seed(0)
    model: nn.Module = torchvision.models.alexnet(weights=None)
    return model


@pytest.fixture
def models_file() -> Path:
    """The path of the tiny-models file, for `file.py:attr` sources."""
    return MODELS_FILE


@pytest.fixture
def full_open_held(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Hold the app's full open (the torch side) until the test sets the event: the tree read
    before torch stays on screen meanwhile. Released at teardown whatever happened."""
    from modelbrowse.tui.options import AppOptions

    release = threading.Event()
    resolve = AppOptions.resolve

    def held(self: AppOptions, spec: str | None = None) -> object:
        release.wait(60)
        return resolve(self, spec)

    monkeypatch.setattr(AppOptions, "resolve", held)
    yield release
    release.set()


@pytest.fixture(scope="session")
def bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT (random, seed 0) as `save_pretrained` writes it: config.json and
    model.safetensors; a model fed token ids. Skips without transformers."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=32,
    )
    config.architectures = ["BertModel"]
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf") / "tiny-bert"
    transformers.BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True)
def _state_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The error log of each test goes to a folder of its own, never the user's."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture(autouse=True)
def _no_unexpected_app_errors(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[BaseException]]:
    """The app turns an unexpected error into a notification and goes on; in a test that is a
    failure unless the test is marked `app_errors_expected` (and then it gets the list)."""
    from modelbrowse.tui.failures import FailureHandling

    seen: list[BaseException] = []
    handle = FailureHandling._handle_exception

    def recording(self: FailureHandling, error: Exception) -> None:
        seen.append(error)
        handle(self, error)

    monkeypatch.setattr(FailureHandling, "_handle_exception", recording)
    yield seen
    if seen and request.node.get_closest_marker("app_errors_expected") is None:
        raise AssertionError(
            "the app caught unexpected errors:\n"
            + "\n".join("".join(traceback.format_exception(e)) for e in seen)
        )


@pytest.fixture(autouse=True)
def _collect_stopped_apps(request: pytest.FixtureRequest) -> Iterator[None]:
    """An app and its widgets refer to one another, so a stopped app and the model it showed
    are freed only by a full collection, which Python runs rarely: after each Pilot test one
    runs (a few tenths of a second), or each process would grow by a model per app test."""
    yield
    if inspect.iscoroutinefunction(request.function):
        gc.collect()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help="run the fuzz tests at full length (20,000 specs, 2,000 damaged files a format)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--slow"):
        os.environ["MODELBROWSE_SLOW_TESTS"] = "1"  # read when the fuzz modules are imported
