"""Replace and insert specs under generated and mutated input: a torch.nn module or a SpecError.

A canary records every call that would mean the spec ran code: `os.system`, `subprocess`,
`eval`/`exec`, an import of a module outside torch, a file opened for writing. The examples
per property are `SPEC_EXAMPLES`; with `pytest --slow` (or `MODELBROWSE_SLOW_TESTS=1`),
`SLOW_SPEC_EXAMPLES`.
"""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from modelbrowse.core.edits.specs import SpecError, build_module

# Only code of this project (or code it would run: an `exec`-ed string has no module) is
# watched; torch runs exec and imports of its own (classes made on first use, sympy loaded
# lazily), which are not the spec's doing.
WATCHED_CALLERS = ("modelbrowse", "tests", "test_", "__main__", "builtins")
SPEC_EXAMPLES = 600
SLOW_SPEC_EXAMPLES = 20_000
# Real modules are built up to this size in the test (the app's limit is 16 GiB).
TEST_MAX_BYTES = 64 * 1024**2

VALID = [
    "nn.Linear(4, 2)",
    "nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Dropout(p=0.1))",
    "nn.Conv2d(3, 16, kernel_size=(3, 3), stride=2, padding=1, bias=False)",
    "nn.LayerNorm([8, 8], eps=1e-5)",
    "torch.nn.Embedding(100, 16, padding_idx=0)",
    "Identity()",
    "nn.MultiheadAttention(16, 4, batch_first=True)",
]
HOSTILE = [
    "__import__('os').system('touch /tmp/pwned')",
    "nn.Linear.__init__.__globals__['os'].system('x')",
    "nn.Linear(4, 2).__class__.__bases__[0].__subclasses__()",
    "(lambda: os.system('x'))()",
    "[os.system('x') for _ in range(1)]",
    "nn.Linear(*open('/etc/passwd'))",
    "nn.Linear(**{'in_features': 2})",
    "eval('1')",
    "exec('import os')",
    "getattr(nn, 'Linear')(2, 2)",
    "nn.Sequential(nn.Linear(2, 2)).load_state_dict({})",
    "nn.Linear(10**12, 10**12)",
    "nn.Linear(10**6, 10**6)",
    "nn.Embedding(2**62, 2**62)",
    "nn.Linear(10**10**10, 1)",
    "nn.Linear(2**65, 1)",
    "nn.Linear('a' * 3, 1)",
    "nn.Linear(" * 30 + ")" * 30,
    "nn.Linear(2, 2, device='cuda')",
    "nn.Linear(2, 2, dtype=torch.float64)",
    "f'{os.system(1)}'",
    "nn.Linear(2, 2) if True else 0",
    "nn.Linear(2, 2); os.system('x')",
]
TOKENS = [
    "nn.", "torch.", "Linear", "Conv2d", "Sequential", "ReLU", "(", ")", ",", "=", "[", "]",
    "1", "0", "-1", "10**9", "2.5", "'a'", "True", "None", "__class__", "__globals__",
    "os", "system", "lambda", ":", "*", "**", ".", " ", "import", "open", "eval", "x",
]  # fmt: skip


@contextmanager
def canary() -> Iterator[list[str]]:
    """Records every forbidden call made inside the block (and stops it from running)."""
    calls: list[str] = []

    def record(name: str) -> Any:
        def forbidden(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"{name}{args!r}")
            raise RuntimeError(f"{name} called")

        return forbidden

    real_import, real_open = builtins.__import__, builtins.open

    def code_runner(name: str, real: Any) -> Any:
        def watched(*args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller and not caller.startswith(WATCHED_CALLERS):
                return real(*args, **kwargs)
            calls.append(f"{name} from {caller}")
            raise RuntimeError(f"{name} called")

        return watched

    def watched_import(name: str, *args: Any, **kwargs: Any) -> Any:
        # A module loaded for the first time at this project's request: code the spec ran.
        caller = sys._getframe(1).f_globals.get("__name__", "")
        watched = not caller or caller.startswith(WATCHED_CALLERS)
        if watched and name not in sys.modules and not name.startswith("torch"):
            calls.append(f"import {name}")
        return real_import(name, *args, **kwargs)

    def watched_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(flag in mode for flag in "wax+"):
            calls.append(f"open({file!r}, {mode!r})")
        return real_open(file, mode, *args, **kwargs)

    with ExitStack() as patches:
        for name in ("system", "popen", "execv", "execve", "spawnv", "remove", "unlink"):
            patches.enter_context(mock.patch.object(os, name, record(f"os.{name}")))
        for name in ("Popen", "run", "call", "check_output"):
            patches.enter_context(mock.patch.object(subprocess, name, record(f"subprocess.{name}")))
        for name, replacement in (
            ("eval", code_runner("eval", builtins.eval)),
            ("exec", code_runner("exec", builtins.exec)),
            ("__import__", watched_import),
            ("open", watched_open),
        ):
            patches.enter_context(mock.patch.object(builtins, name, replacement))
        yield calls


def check(text: str) -> None:
    """A module of a torch.nn class within the size limit, or a SpecError; nothing else."""
    try:
        with canary() as calls:
            try:
                module = build_module(text, max_bytes=TEST_MAX_BYTES)
            finally:
                assert calls == [], f"{text!r} ran {calls}"
    except SpecError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip()
        return
    assert isinstance(module, nn.Module)
    assert type(module).__module__.startswith("torch.nn")
    size = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    assert size <= TEST_MAX_BYTES


def mutate(data: st.DataObject, text: str) -> str:
    """Delete, duplicate, insert a token or flip a character of a valid spec."""
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(text)))
        choice = data.draw(st.integers(0, 3))
        if choice == 0:
            text = text[:where] + text[where + data.draw(st.integers(1, 5)) :]
        elif choice == 1:
            text = text[:where] + data.draw(st.sampled_from(TOKENS)) + text[where:]
        elif choice == 2:
            text = text[:where] + text[where : where + 8] * 2 + text[where + 8 :]
        else:
            text = text[:where] + data.draw(st.characters()) + text[where + 1 :]
    return text


def examples() -> int:
    return SLOW_SPEC_EXAMPLES if os.environ.get("MODELBROWSE_SLOW_TESTS") else SPEC_EXAMPLES


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_specs_are_refused_and_run_nothing(text: str) -> None:
    with canary() as calls, pytest.raises(SpecError):
        build_module(text)
    assert calls == []


def test_a_huge_module_is_refused_with_the_size_it_would_take() -> None:
    with pytest.raises(SpecError) as caught:
        build_module("nn.Linear(10**6, 10**6)")
    assert "would take 3.6 TiB, more than the 16.0 GiB limit" in str(caught.value)


@settings(
    max_examples=examples(),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_specs_build_a_torch_nn_module_or_are_refused(data: st.DataObject) -> None:
    check(mutate(data, data.draw(st.sampled_from(VALID + HOSTILE))))


@settings(
    max_examples=examples(),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=30), text=st.text(max_size=40))
def test_generated_specs_build_a_torch_nn_module_or_are_refused(
    tokens: list[str], text: str
) -> None:
    check("".join(tokens))
    check(text)


def test_the_canary_sees_what_it_guards() -> None:
    """The property tests above could not fail if the canary saw nothing."""
    with canary() as calls:
        with pytest.raises(RuntimeError):
            os.system("true")  # patched: records, runs nothing
        with pytest.raises(RuntimeError):
            eval("1")  # from this module, not torch's
        __import__("json")  # already loaded: harmless
        with pytest.raises(ModuleNotFoundError):
            __import__("a_module_that_does_not_exist")
        assert torch.nn.Linear(2, 2) is not None
    assert calls == [
        "os.system('true',)",
        f"eval from {__name__}",
        "import a_module_that_does_not_exist",
    ]
