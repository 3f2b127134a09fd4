"""The source a recipe names, built again without running code the recipe chose.

Zoo models (torchvision, timm), Hugging Face configs (transformers, never a config's own code)
and checkpoint files are rebuilt from the recipe alone. An import path is code: the recipe only
names it, and the caller supplies it (`load_edited(path, source="mypkg.models:Net")`, or the
class or factory itself). A trust flag recorded in a recipe is never honoured.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from modelbrowse.core.recipe_schema import RecipeError
from modelbrowse.core.sources.base import Source, resolve_source

# What a caller may hand `load_edited` for an import-path source: its spec, or the class or
# factory itself.
Supplied = str | Callable[..., Any] | None


def literal_kwargs(record: dict[str, Any]) -> dict[str, Any]:
    """The recorded keyword arguments: Python literals (text that is none stays text)."""
    kwargs: dict[str, Any] = {}
    for name, text in record.get("kwargs", {}).items():
        try:
            kwargs[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[name] = text
        except (RecursionError, MemoryError):
            problem = f"the recipe's keyword argument {name!r} is nested too deeply"
            raise RecipeError(problem) from None
    return kwargs


def rebuild_architecture(record: dict[str, Any], supplied: Supplied = None) -> Source | None:
    """The architecture of a recipe's source (checked by `recipe_schema`), for weights that
    come from elsewhere; None for a checkpoint edited without one (its keys are the model)."""
    used: list[bool] = []
    source = _architecture(record, supplied, used)
    if supplied is not None and not used:
        raise RecipeError(
            f"source= is for a recipe whose source is an import path; this recipe's is "
            f"{record['spec']!r} ({record['kind']}), which it rebuilds itself"
        )
    return source


def _architecture(record: dict[str, Any], supplied: Supplied, used: list[bool]) -> Source | None:
    kind, spec = record["kind"], record["spec"]
    kwargs = literal_kwargs(record)
    if kind == "import":
        used.append(True)
        return supplied_source(spec, kwargs, supplied)
    if kind == "checkpoint":
        if record.get("whole_model"):
            from modelbrowse.core.sources.checkpoint import resolve_checkpoint
            from modelbrowse.core.sources.files import CheckpointOptions

            options = dict(record.get("checkpoint", {}))
            options["trust_pickle"] = False  # the recipe's word is not the user's
            return resolve_checkpoint(_path(spec), {}, None, None, CheckpointOptions(**options))
        arch = record.get("arch")
        return _architecture(arch, supplied, used) if arch else None
    if kind == "torchvision" and ":" not in spec and "/" not in spec:
        return resolve_source(spec, kwargs)
    if kind == "timm" and spec.startswith("timm:"):
        return resolve_source(spec, kwargs)
    if kind == "huggingface":
        from modelbrowse.core.sources.hf_models import resolve_hf_config

        return resolve_hf_config(Path(_path(spec)))
    raise RecipeError(f"the recipe's source {spec!r} is not a {kind} model")


def supplied_source(spec: str, kwargs: dict[str, Any], supplied: Supplied) -> Source:
    """The recipe's import-path source, built only from what the caller supplied."""
    if supplied is None:
        raise RecipeError(
            f"the recipe's source is the import path {spec!r}, which a recipe cannot make run; "
            f"if you trust that code, pass it: load_edited(path, source={spec!r})"
        )
    if isinstance(supplied, str):
        if normal_spec(supplied) != normal_spec(spec):
            raise RecipeError(f"source={supplied!r} is not the recipe's source {spec!r}")
        return resolve_source(supplied, kwargs)
    if isinstance(supplied, nn.Module) or not callable(supplied):
        raise RecipeError(
            f"source= takes an import path, an nn.Module class or a factory, not "
            f"{type(supplied).__name__}"
        )
    if isinstance(supplied, type) and not issubclass(supplied, nn.Module):
        raise RecipeError(f"source={supplied.__name__} is not an nn.Module class")
    label = getattr(supplied, "__qualname__", None) or type(supplied).__name__
    return Source(spec=spec, kind="import", label=str(label), builder=supplied, kwargs=kwargs)


def normal_spec(spec: str) -> str:
    """An import path as a recipe records it: a file's path absolute."""
    module_part, _, attr = spec.strip().rpartition(":")
    if module_part.endswith(".py"):
        return f"{Path(module_part).expanduser().resolve()}:{attr}"
    return spec.strip()


def _path(spec: str) -> str:
    if not Path(spec).is_absolute():
        raise RecipeError(f"the recipe's file {spec!r} is not an absolute path")
    return spec
