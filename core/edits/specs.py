"""Module specs: `nn.Linear(4096, 10)` parsed with `ast` into a module, never `eval`-ed.

Only classes from `torch.nn` and literal arguments (numbers, strings, booleans, None, tuples,
lists, and nested `torch.nn` constructors) are accepted, with `+ - * **` between numbers
(`10**6`, `4 * 1024`) folded within bounds. Anything else is a `SpecError`.
"""

from __future__ import annotations

import ast
import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from modelbrowse.core.edits.spec_size import (
    MAX_SPEC_MODULES,
    MAX_SPEC_TENSORS,
    check_repeats,
    footprint_of,
    refusal,
)
from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.sources.build_budget import BuildLimitError, counted
from modelbrowse.core.sources.meta_build import on_meta
from modelbrowse.core.units import printable

MAX_SPEC_LENGTH = 4_000
MAX_DEPTH = 20
MAX_MODULE_BYTES = 16 * 1024**3
"""Refuse a new module whose tensors would take more than this (an `nn.Linear(10**6, 10**6)`)."""


class SpecError(ModelBrowseError):
    """A spec that does not parse, names no torch.nn class, or whose constructor fails."""


@dataclass(frozen=True)
class _Call:
    cls: type[nn.Module]
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]


def _nn_class(name: str) -> type[nn.Module]:
    candidate = getattr(nn, name, None) if not name.startswith("_") else None
    if not (isinstance(candidate, type) and issubclass(candidate, nn.Module)):
        raise SpecError(f"'{name}' is not a torch.nn module class")
    if issubclass(candidate, LazyModuleMixin):
        raise SpecError(f"nn.{name} is a lazy module, with no sizes until its first forward")
    return candidate


def _class_of(func: ast.expr) -> type[nn.Module]:
    if isinstance(func, ast.Name):
        return _nn_class(func.id)
    if isinstance(func, ast.Attribute):
        owner = func.value
        is_nn = isinstance(owner, ast.Name) and owner.id == "nn"
        is_torch_nn = (
            isinstance(owner, ast.Attribute)
            and owner.attr == "nn"
            and isinstance(owner.value, ast.Name)
            and owner.value.id == "torch"
        )
        if is_nn or is_torch_nn:
            return _nn_class(func.attr)
    raise SpecError(f"only torch.nn classes can be called, not '{_source(func)}'")


def _source(node: ast.AST) -> str:
    return _excerpt(ast.unparse(node))


def _excerpt(text: str) -> str:
    """Text quoted in a one-line message: whitespace runs (newlines too) as one space, other
    control characters escaped, long text elided, as the app shows names from a file."""
    return printable(" ".join(text.split()), limit=60)


def _literal(node: ast.expr, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise SpecError("the spec is nested too deeply")
    if isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, (bool, int, float, str))
    ):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, tuple(_ARITHMETIC)):
        return _arithmetic(node, depth)
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [_literal(item, depth + 1) for item in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Call):
        return _call(node, depth + 1)
    raise SpecError(f"only literal arguments are allowed, not '{_source(node)}'")


_ARITHMETIC: dict[type[ast.operator], Any] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Pow: lambda a, b: a**b,
}
# Sizes such as `10**6` or `4 * 1024` are folded; anything past this is no size at all.
_MAX_NUMBER = 2**64


def _arithmetic(node: ast.BinOp, depth: int) -> int | float:
    left, right = _literal(node.left, depth + 1), _literal(node.right, depth + 1)
    numbers = (int, float)
    if not all(isinstance(v, numbers) and not isinstance(v, bool) for v in (left, right)):
        raise SpecError(f"arithmetic works on numbers only, not '{_source(node)}'")
    if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > _MAX_NUMBER):
        raise SpecError(f"'{_source(node)}' is too large a number")
    try:
        value = _ARITHMETIC[type(node.op)](left, right)
    except (OverflowError, ZeroDivisionError, ValueError):
        raise SpecError(f"'{_source(node)}' cannot be computed") from None
    if isinstance(value, complex) or abs(value) > _MAX_NUMBER:
        raise SpecError(f"'{_source(node)}' is too large a number")
    return value  # type: ignore[no-any-return]


_PLACEMENT_ARGUMENTS = ("device", "dtype")


def _call(node: ast.Call, depth: int) -> _Call:
    cls = _class_of(node.func)
    args = []
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise SpecError("*args are not allowed in a spec")
        args.append(_literal(arg, depth))
    kwargs: list[tuple[str, Any]] = []
    for keyword in node.keywords:
        if keyword.arg is None:
            raise SpecError("**kwargs are not allowed in a spec")
        if any(keyword.arg == name for name, _ in kwargs):
            raise SpecError(f"keyword argument repeated: {keyword.arg}")
        if keyword.arg in _PLACEMENT_ARGUMENTS:
            raise SpecError(
                f"leave out {keyword.arg}=: a new module takes the device and dtype of its place"
            )
        kwargs.append((keyword.arg, _literal(keyword.value, depth)))
    return _Call(cls, tuple(args), tuple(kwargs))


def parse_spec(text: str) -> _Call:
    """Parse `text` into a call tree of torch.nn classes and literals."""
    text = text.strip()
    if not text:
        raise SpecError("empty spec: type a constructor such as nn.Linear(4096, 10)")
    if len(text) > MAX_SPEC_LENGTH:
        raise SpecError(f"the spec is longer than {MAX_SPEC_LENGTH} characters")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a SyntaxWarning ("invalid decimal literal")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise SpecError(f"not valid Python: {exc.msg} at column {exc.offset or 0}") from None
    except (ValueError, RecursionError, MemoryError):
        raise SpecError("the spec cannot be parsed") from None
    if not isinstance(tree.body, ast.Call):
        raise SpecError(f"a spec is one constructor call such as nn.ReLU(), not '{_excerpt(text)}'")
    return _call(tree.body, 0)


class _PrefixNn(ast.NodeTransformer):
    """Writes every constructor as `nn.Name(...)`, however the user spelled it."""

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        node.func = ast.Attribute(value=ast.Name(id="nn", ctx=ast.Load()), attr=name)
        return node


def spec_code(text: str) -> str:
    """The spec as Python with `nn.` prefixes: `Linear(4096, 10)` -> `nn.Linear(4096, 10)`."""
    parse_spec(text)  # refuses anything but torch.nn calls and literals
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = _PrefixNn().visit(ast.parse(text.strip(), mode="eval"))
    return ast.unparse(ast.fix_missing_locations(tree))


def _instantiate(call: _Call) -> nn.Module:
    def resolve(value: Any) -> Any:
        if isinstance(value, _Call):
            return _instantiate(value)
        if isinstance(value, tuple):
            return tuple(resolve(v) for v in value)
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    args = [resolve(a) for a in call.args]
    kwargs = {k: resolve(v) for k, v in call.kwargs}
    try:
        return call.cls(*args, **kwargs)
    except BuildLimitError as exc:
        raise SpecError(str(exc)) from None
    except Exception as exc:  # constructors raise TypeError, ValueError, RuntimeError, ...
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SpecError(f"nn.{call.cls.__name__}: {type(exc).__name__}: {message}") from None


def build_module(
    text: str,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    max_bytes: int = MAX_MODULE_BYTES,
) -> nn.Module:
    """Build the module a spec describes, on `device` in `dtype` (floating tensors only).

    Its size is known before anything real is built: counts of layers are extrapolated from
    small builds (core.spec_size), then it is built on `meta` under a budget of modules and
    tensors, and only a spec within the limits is built for real.
    """
    call = parse_spec(text)
    what = f"'{_excerpt(text)}'"
    problem = check_repeats(call, _instantiate, what, max_bytes)
    if problem is not None:
        raise SpecError(problem)
    with on_meta(), counted(what, MAX_SPEC_MODULES, MAX_SPEC_TENSORS):
        probe = _instantiate(call)
    problem = refusal(what, footprint_of(probe), max_bytes)
    if problem is not None:
        raise SpecError(problem)
    if device is not None and torch.device(device).type == "meta":
        module = probe
    else:
        with counted(what, MAX_SPEC_MODULES, MAX_SPEC_TENSORS):
            module = _instantiate(call)
        if device is not None:
            module = module.to(device=device)
    if dtype is not None and dtype.is_floating_point:
        module = module.to(dtype=dtype)
    return module


# --- the constructor call of an existing module ------------------------------------------------

_SKIPPED_ARGUMENTS = {"device", "dtype", "self", "args", "kwargs"}


def constructor_text(module: nn.Module) -> str:
    """`nn.Linear(in_features=4096, out_features=1000, bias=True)`; '' if it cannot be written.

    Only torch.nn classes can be written, and only when every argument can be recovered from
    the module's attributes as a literal, and the text builds (on meta) the same submodules,
    parameters and buffers, with the same shapes, as `module` has.
    """
    text = _constructor_text(module)
    return text if text and _rebuilds(text, module) else ""


def _layout(module: nn.Module) -> tuple[list[Any], ...]:
    return (
        [(name, type(m)) for name, m in module.named_modules(remove_duplicate=False)],
        [(name, t.shape) for name, t in module.named_parameters(remove_duplicate=False)],
        [(name, t.shape) for name, t in module.named_buffers(remove_duplicate=False)],
    )


def _rebuilds(text: str, module: nn.Module) -> bool:
    try:
        with torch.device("meta"):
            rebuilt = _instantiate(parse_spec(text))
        return _layout(rebuilt) == _layout(module)
    except (SpecError, ValueError, RuntimeError):  # ValueError: an uninitialized (lazy) tensor
        return False


def _constructor_text(module: nn.Module) -> str:
    cls = type(module)
    if getattr(nn, cls.__name__, None) is not cls:
        return ""
    if isinstance(module, (nn.Sequential, nn.ModuleList)):
        parts = [_constructor_text(child) for child in module]
        if any(not part for part in parts):
            return ""
        return (
            f"nn.{cls.__name__}({', '.join(parts)})"
            if isinstance(module, nn.Sequential)
            else f"nn.ModuleList([{', '.join(parts)}])"
        )
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return ""
    arguments = []
    for name, parameter in parameters.items():
        if name in _SKIPPED_ARGUMENTS or parameter.kind in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
        ):
            continue
        value = _argument_value(module, name)
        if value is _MISSING:
            if parameter.default is parameter.empty:
                return ""  # a required argument we cannot recover
            continue
        arguments.append(f"{name}={value!r}")
    return f"nn.{cls.__name__}({', '.join(arguments)})"


_MISSING = object()


def _argument_value(module: nn.Module, name: str) -> Any:
    if name == "bias" and "bias" in module._parameters:
        return module._parameters["bias"] is not None
    if name == "bias" and hasattr(module, "bias") and module.bias is None:
        return False
    value = module.__dict__.get(name, _MISSING)
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, (bool, int, float, str, type(None))) for v in value
    ):
        return tuple(value)
    return _MISSING
