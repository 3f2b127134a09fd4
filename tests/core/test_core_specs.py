"""Module specs: constructor text parsed with `ast` into a module, and the text of a module."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import torch
from torch import nn

from modelbrowse.core.edits.specs import (
    MAX_DEPTH,
    MAX_SPEC_LENGTH,
    SpecError,
    build_module,
    constructor_text,
    parse_spec,
    spec_code,
)
from modelbrowse.core.errors import ModelBrowseError
from tests.model_support import submodule


def layout(module: nn.Module) -> tuple[list[Any], ...]:
    """Submodule names and types, parameter and buffer names and shapes."""
    return (
        [(n, type(m)) for n, m in module.named_modules()],
        [(n, tuple(p.shape)) for n, p in module.named_parameters()],
        [(n, tuple(b.shape)) for n, b in module.named_buffers()],
    )


def nest(depth: int) -> str:
    """`depth` Sequentials around one ReLU."""
    return "nn.Sequential(" * depth + "nn.ReLU()" + ")" * depth


# --- specs that build ----------------------------------------------------------------------------

M = TypeVar("M", bound=nn.Module)


def of(kind: type[M], check: Callable[[M], bool]) -> Callable[[nn.Module], bool]:
    """`check` on a module that is a `kind` (the class the spec names)."""
    return lambda module: isinstance(module, kind) and check(module)


BUILDS: list[tuple[str, Callable[[nn.Module], bool]]] = [
    ("nn.Linear(4096, 10)", of(nn.Linear, lambda m: (m.in_features, m.out_features) == (4096, 10))),
    ("Linear(4096, 10)", of(nn.Linear, lambda m: (m.in_features, m.out_features) == (4096, 10))),
    (
        "torch.nn.Linear(8, 3, bias=False)",
        of(nn.Linear, lambda m: m.out_features == 3 and m.bias is None),
    ),
    (
        "nn.Linear(in_features=5, out_features=2)",
        of(nn.Linear, lambda m: m.weight.shape == (2, 5)),
    ),
    ("  nn.ReLU(inplace=True)  \n", of(nn.ReLU, lambda m: m.inplace is True)),
    ("nn.Conv2d(3, 8, (3, 5), stride=(2, 1))", of(nn.Conv2d, lambda m: m.kernel_size == (3, 5))),
    ("nn.Conv2d(3, 8, 3, padding='same')", of(nn.Conv2d, lambda m: m.padding == "same")),
    ("nn.LayerNorm([4, 8])", of(nn.LayerNorm, lambda m: m.normalized_shape == (4, 8))),
    ("nn.BatchNorm2d(8, momentum=None)", of(nn.BatchNorm2d, lambda m: m.momentum is None)),
    ("nn.GELU(approximate='tanh')", of(nn.GELU, lambda m: m.approximate == "tanh")),
    ("nn.Flatten(-3, -1)", of(nn.Flatten, lambda m: (m.start_dim, m.end_dim) == (-3, -1))),
    ("nn.Flatten(start_dim=+2)", of(nn.Flatten, lambda m: m.start_dim == 2)),
    ("nn.LeakyReLU(-0.5)", of(nn.LeakyReLU, lambda m: m.negative_slope == -0.5)),
    ("nn.Dropout(0.25, False)", of(nn.Dropout, lambda m: m.p == 0.25 and m.inplace is False)),
    ("nn.Softmax(dim=-1)", of(nn.Softmax, lambda m: m.dim == -1)),
    (
        "nn.ModuleList([nn.ReLU(), nn.Tanh()])",
        of(nn.ModuleList, lambda m: [type(c) for c in m] == [nn.ReLU, nn.Tanh]),
    ),
    ("nn.Embedding(10, 4, padding_idx=None)", of(nn.Embedding, lambda m: m.padding_idx is None)),
]


@pytest.mark.parametrize(("text", "check"), BUILDS, ids=[t for t, _ in BUILDS])
def test_a_spec_builds_the_module_it_names(text: str, check: Callable[[nn.Module], bool]) -> None:
    """Literals of every allowed kind reach the constructor as written."""
    module = build_module(text)
    class_name = text.strip().split("(")[0].rsplit(".", 1)[-1]
    assert type(module) is getattr(nn, class_name)
    assert check(module)


def test_a_nested_sequential_builds_and_runs() -> None:
    """Constructors nest; the result runs forward with the shapes written."""
    text = "nn.Sequential(nn.Linear(4096, 256), nn.ReLU(), nn.Linear(256, 10))"
    module = build_module(text)
    assert isinstance(module, nn.Sequential)
    assert [type(c) for c in module] == [nn.Linear, nn.ReLU, nn.Linear]
    first, last = submodule(module, "0", nn.Linear), submodule(module, "2", nn.Linear)
    assert (first.in_features, last.out_features) == (4096, 10)
    assert module(torch.zeros(2, 4096)).shape == (2, 10)


def test_parse_spec_returns_the_call_tree() -> None:
    call = parse_spec("nn.Conv2d(3, 8, kernel_size=(3, 3), bias=False)")
    assert call.cls is nn.Conv2d
    assert call.args == (3, 8)
    assert dict(call.kwargs) == {"kernel_size": (3, 3), "bias": False}


def test_nothing_is_evaluated() -> None:
    """The text is parsed, not handed to eval or exec (test_spec_fuzz.py has many more)."""
    from tests.core.test_spec_fuzz import canary

    with canary() as calls:
        module = build_module("nn.Sequential(nn.Linear(2, 3), nn.ReLU())")
    assert isinstance(module, nn.Sequential)
    assert calls == []


def test_building_on_meta_takes_no_random_numbers() -> None:
    """A seed then the spec gives what a seed then the constructor gives (edits replay on it)."""
    torch.manual_seed(7)
    built = build_module("nn.Linear(16, 4)")
    torch.manual_seed(7)
    direct = nn.Linear(16, 4)
    assert torch.equal(built.get_parameter("weight"), direct.weight)
    assert torch.equal(built.get_parameter("bias"), direct.bias)


def test_device_and_dtype_placement() -> None:
    """Floating tensors take the dtype; integer buffers keep theirs; meta allocates nothing."""
    module = build_module("nn.BatchNorm2d(4)", dtype=torch.float64)
    assert module.weight.dtype == torch.float64
    assert module.running_mean.dtype == torch.float64
    assert module.num_batches_tracked.dtype == torch.int64
    assert build_module("nn.Linear(2, 2)", dtype=torch.int64).weight.dtype == torch.float32
    meta = build_module("nn.Linear(20000, 20000)", device="meta")
    assert meta.weight.is_meta


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Linear(4096, 10)", "nn.Linear(4096, 10)"),
        ("torch.nn.Linear(4096, 10, bias=False)", "nn.Linear(4096, 10, bias=False)"),
        (
            "Sequential(torch.nn.Linear(1, 2), ReLU())",
            "nn.Sequential(nn.Linear(1, 2), nn.ReLU())",
        ),
        ("nn.LayerNorm([4, 8], eps=-1e-05)", "nn.LayerNorm([4, 8], eps=-1e-05)"),
    ],
)
def test_spec_code_writes_nn_prefixes(text: str, expected: str) -> None:
    assert spec_code(text) == expected
    assert layout(build_module(expected)) == layout(build_module(text))


# --- specs that are refused ----------------------------------------------------------------------

REFUSED: list[tuple[str, str]] = [
    ("__import__('os')", "'__import__' is not a torch.nn module class"),
    ("os.system('x')", "only torch.nn classes can be called, not 'os.system'"),
    ("torch.zeros(3)", "only torch.nn classes can be called, not 'torch.zeros'"),
    ("nn.Linear(4096, x)", "only literal arguments are allowed, not 'x'"),
    ("nn.Linear(4096, 10 / 2)", "only literal arguments are allowed, not '10 / 2'"),
    ("nn.Linear(4096, 10**100)", "'10 ** 100' is too large a number"),
    ("nn.ReLU(inplace=True * 2)", "arithmetic works on numbers only, not 'True * 2'"),
    ("nn.Linear(4, torch.zeros(2))", "only torch.nn classes can be called, not 'torch.zeros'"),
    ("nn.ReLU(inplace=-True)", "only literal arguments are allowed, not '-True'"),
    ("nn.Linear(4, 2, b'x')", "only literal arguments are allowed, not 'b'x''"),
    ("nn.NotAClass(1)", "'NotAClass' is not a torch.nn module class"),
    ("nn.Parameter(1)", "'Parameter' is not a torch.nn module class"),
    ("nn.init(1)", "'init' is not a torch.nn module class"),
    ("nn._ConvNd(1)", "'_ConvNd' is not a torch.nn module class"),
    ("nn.functional.relu()", "only torch.nn classes can be called, not 'nn.functional.relu'"),
    ("nn.functional.relu", "a spec is one constructor call such as nn.ReLU(), not"),
    ("nn.Linear.__init__(1)", "only torch.nn classes can be called, not 'nn.Linear.__init__'"),
    (
        "nn.Linear(4, 2).double()",
        "only torch.nn classes can be called, not 'nn.Linear(4, 2).double'",
    ),
    ("nn.Linear", "a spec is one constructor call such as nn.ReLU(), not 'nn.Linear'"),
    ("lambda: nn.ReLU()", "a spec is one constructor call such as nn.ReLU(), not 'lambda"),
    ("[nn.ReLU()]", "a spec is one constructor call"),
    ("nn.Linear(*sizes)", "*args are not allowed in a spec"),
    ("nn.Linear(**sizes)", "**kwargs are not allowed in a spec"),
    ("nn.Linear(4,", "not valid Python: '(' was never closed"),
    ("nn.ReLU(); import os", "not valid Python:"),
    ("", "empty spec: type a constructor such as nn.Linear(4096, 10)"),
    (" \n\t", "empty spec"),
    ("nn.Linear('a', 2)", "nn.Linear: TypeError: empty(): argument 'size'"),
    (
        "nn.Linear(-1, 2)",
        "nn.Linear: RuntimeError: Trying to create tensor with negative dimension",
    ),
    ("nn.Dropout(p=2.0)", "nn.Dropout: ValueError: dropout probability has to be between 0 and 1"),
    ("nn.Linear(4, 2, bais=False)", "nn.Linear: TypeError:"),
    ("nn.Linear(in_features=4, in_features=5)", "keyword argument repeated: in_features"),
    ("nn.Linear(4, 2, bias=True, bias=False)", "keyword argument repeated: bias"),
    ("nn.Linear(in_features=4, 2)", "not valid Python: positional argument follows keyword"),
    ("nn.ReLU(f'{1}')", "only literal arguments are allowed, not 'f'{1}''"),
    ("nn.Module(1)", "nn.Module: TypeError: Module.__init__() takes 1 positional argument"),
    (
        "nn.Linear(1000000, 1000000)",
        "'nn.Linear(1000000, 1000000)' would take 3.6 TiB, more than the 16.0 GiB limit",
    ),
    ("nn.Linear(\n10**6,\n  10**6)", "'nn.Linear( 10**6, 10**6)' would take 3.6 TiB"),
    ("(nn.Linear\n)", "such as nn.ReLU(), not '(nn.Linear )'"),
    ("'\x1b[2Jred'", "such as nn.ReLU(), not ''\\x1b[2Jred''"),
    ("nn.Linear(10**6, 10**6)#\x1b[2J", "'nn.Linear(10**6, 10**6)#\\x1b[2J' would take 3.6 TiB"),
    ("nn.LazyLinear(10)", "nn.LazyLinear is a lazy module"),
    ("nn.Linear(4, 2, device='meta')", "leave out device=: a new module takes the device"),
    ("nn.Linear(4, 2, dtype='float16')", "leave out dtype="),
    (nest(MAX_DEPTH + 2), "the spec is nested too deeply"),
    ("nn.ReLU(" + "[" * 30 + "]" * 30 + ")", "the spec is nested too deeply"),
    ("(" * 300 + "nn.ReLU()" + ")" * 300, "not valid Python: too many nested parentheses"),
    ("nn.Identity(" + "0, " * MAX_SPEC_LENGTH + ")", f"longer than {MAX_SPEC_LENGTH} characters"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED, ids=[t[:40] for t, _ in REFUSED])
def test_a_bad_spec_is_a_one_line_spec_error(text: str, message: str) -> None:
    """Every refusal is a SpecError (a ModelBrowseError the app shows) on one line."""
    with pytest.raises(SpecError, match=re.escape(message)) as caught:
        build_module(text)
    assert isinstance(caught.value, ModelBrowseError)
    assert "\n" not in str(caught.value)


def test_refused_specs_are_refused_by_spec_code_too() -> None:
    with pytest.raises(SpecError, match=re.escape("'x' is not a torch.nn module class")):
        spec_code("x()")


def test_depth_limit_allows_the_documented_nesting() -> None:
    module = build_module(nest(MAX_DEPTH))
    assert sum(isinstance(m, nn.Sequential) for m in module.modules()) == MAX_DEPTH


def test_size_limit_is_adjustable() -> None:
    with pytest.raises(SpecError, match=re.escape("more than the 1.0 KiB limit")):
        build_module("nn.Linear(100, 100)", max_bytes=1024)
    assert build_module("nn.Linear(10, 10)", max_bytes=1024).get_parameter("weight").numel() == 100


# --- the constructor text of an existing module --------------------------------------------------

ROUND_TRIPS: list[nn.Module] = [
    nn.Linear(4096, 1000),
    nn.Linear(3, 2, bias=False),
    nn.Conv2d(3, 64, 11, 4, 2),
    nn.Conv2d(3, 8, (3, 1), padding="same", bias=False, padding_mode="reflect", dilation=2),
    nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=1, groups=1),
    nn.Conv1d(4, 8, 5, groups=4),
    nn.BatchNorm2d(64, eps=1e-3, momentum=None),
    nn.BatchNorm1d(8, affine=False, track_running_stats=False),
    nn.LayerNorm((4, 8), elementwise_affine=False),
    nn.GroupNorm(2, 8),
    nn.Dropout(0.3),
    nn.Dropout(0.5, inplace=True),
    nn.ReLU(),
    nn.ReLU(inplace=True),
    nn.GELU("tanh"),
    nn.MaxPool2d(3, 2, ceil_mode=True),
    nn.AdaptiveAvgPool2d((6, 6)),
    nn.Embedding(10, 4, padding_idx=0),
    nn.Flatten(1, -1),
    nn.Identity(),
    nn.PReLU(3, init=0.1),
    nn.Sequential(),
    nn.Sequential(nn.Linear(4096, 256), nn.ReLU(), nn.Linear(256, 10)),
    nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)), nn.ReLU()),
    nn.ModuleList([nn.Linear(2, 2), nn.ReLU()]),
]


@pytest.mark.parametrize("module", ROUND_TRIPS, ids=[repr(m)[:40] for m in ROUND_TRIPS])
def test_constructor_text_round_trips(module: nn.Module) -> None:
    """The pre-filled text builds a module of the same class, settings and shapes."""
    text = constructor_text(module)
    assert text.startswith(f"nn.{type(module).__name__}(")
    rebuilt = build_module(text)
    assert type(rebuilt) is type(module)
    assert repr(rebuilt) == repr(module)
    assert layout(rebuilt) == layout(module)
    assert constructor_text(rebuilt) == text


def test_constructor_text_of_a_linear_names_its_arguments() -> None:
    expected = "nn.Linear(in_features=4096, out_features=1000, bias=True)"
    assert constructor_text(nn.Linear(4096, 1000)) == expected
    assert constructor_text(nn.Linear(4096, 1000).double().to("meta")) == expected


class MyLinear(nn.Linear):
    """A subclass: not a torch.nn class."""


UNWRITABLE: list[nn.Module] = [
    MyLinear(2, 2),
    nn.Sequential(nn.Linear(2, 2), MyLinear(2, 2)),
    nn.Sequential(OrderedDict([("proj", nn.Linear(2, 2)), ("act", nn.ReLU())])),
    nn.LSTM(4, 8),
    nn.GRU(3, 5, num_layers=2),
    nn.ModuleDict({"a": nn.ReLU()}),
    nn.ParameterList([nn.Parameter(torch.ones(2))]),
    nn.MultiheadAttention(8, 2, bias=False),
    nn.TransformerEncoderLayer(8, 2),
    nn.LazyLinear(3),
]


@pytest.mark.parametrize("module", UNWRITABLE, ids=[type(m).__name__ for m in UNWRITABLE])
def test_constructor_text_is_empty_when_the_text_would_build_something_else(
    module: nn.Module,
) -> None:
    """'' rather than a text that fails to build or drops children, names or tensors."""
    assert constructor_text(module) == ""


def test_a_spec_python_warns_about_is_refused_without_a_warning() -> None:
    """A SyntaxWarning printed to stderr would land on the app's screen."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SpecError):
            build_module("nn.Linear(1if 1 else 2, 2)")
    assert [str(w.message) for w in caught] == []
