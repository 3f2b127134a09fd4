"""`timm:NAME` sources: any model `timm.list_models()` knows, built by `timm.create_model`.

timm is an optional extra: without it a `timm:` source is one line saying how to install it,
and nothing else changes. Models are built on `meta` first like torchvision's.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
from types import ModuleType
from typing import Any

from modelbrowse.core.arguments import InputShape
from modelbrowse.core.errors import SourceError
from modelbrowse.core.sources.base import Source

PREFIX = "timm:"
INSTALL_HINT = "pip install 'modelbrowse[timm]'"
IMAGE: InputShape = ((1, 3, 224, 224),)


def timm_installed() -> bool:
    try:
        return importlib.util.find_spec("timm") is not None
    except (ValueError, ImportError):  # a broken or blocked install
        return False


def _import_timm(name: str) -> ModuleType:
    try:
        import timm
    except ModuleNotFoundError:
        raise SourceError(
            f"timm is not installed: {INSTALL_HINT} (or pip install timm) to open {PREFIX}{name}"
        ) from None
    return timm


@functools.cache
def timm_names() -> tuple[str, ...]:
    """Every architecture timm can build (without pretrained tags); () without timm."""
    if not timm_installed():
        return ()
    import timm

    return tuple(timm.list_models())


def resolve_timm(spec: str, kwargs: dict[str, Any]) -> Source:
    """`timm:resnet50` (a pretrained tag such as `resnet50.a1_in1k` names the same
    architecture; weights are never downloaded: random initialisation, as for torchvision)."""
    name = spec.removeprefix(PREFIX).strip()
    timm = _import_timm(name)
    architecture = name.partition(".")[0]
    names = timm_names()
    if architecture not in names:
        close = difflib.get_close_matches(architecture, names, n=3, cutoff=0.6)
        hint = f" (did you mean: {', '.join(PREFIX + c for c in close)}?)" if close else ""
        raise SourceError(f"unknown timm model '{name}'{hint}")
    builder = functools.partial(timm.create_model, name, pretrained=False)
    return Source(
        spec=f"{PREFIX}{name}",
        kind="timm",
        label=f"{PREFIX}{name}",
        builder=builder,
        kwargs=kwargs,
        default_input=_default_input(timm, name),
    )


def _default_input(timm: ModuleType, name: str) -> InputShape:
    """The input size timm's pretrained config gives (`(3, 384, 384)`), else 224x224 images."""
    try:
        config = timm.models.get_pretrained_cfg(name)
        size = tuple(int(d) for d in config.input_size)
    except Exception:  # no config for this name, or an older timm without it
        return IMAGE
    return ((1, *size),) if len(size) == 3 else IMAGE


def timm_suggestion(spec: str) -> str | None:
    """`timm:resnet50d` for a plain name timm knows exactly (torchvision does not)."""
    lowered = spec.lower()
    return next((PREFIX + n for n in timm_names() if n.lower() == lowered), None)
