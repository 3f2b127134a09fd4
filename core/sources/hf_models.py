"""Architectures from a Hugging Face `config.json`, built with `transformers` when it is installed.

`transformers` is an optional extra: without it a Hugging Face folder opens as its weights' tree,
and only a folder holding nothing but a config (which has no tree without an architecture) needs
it. Models are built on the `meta` device first, so a 7B config costs milliseconds and no memory.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from modelbrowse.core.errors import SourceError
from modelbrowse.core.sources.base import Source
from modelbrowse.core.sources.build_budget import (
    MAX_CONFIG_MODULES,
    MAX_CONFIG_TENSORS,
    config_count_problem,
    counted,
)
from modelbrowse.core.sources.key_rules import (
    CUSTOM_CODE,
    INSTALL_HINT,
    custom_code,
    describe_hf_config,
    transformers_installed,
)
from modelbrowse.core.sources.meta_build import on_meta


@dataclass
class HFConfigSource(Source):
    """`modelbrowse ./llama-7b/config.json`: the architecture a config describes."""

    config_path: Path | None = None
    info_title: ClassVar[str] = "config"

    @property
    def info(self) -> list[tuple[str, str]]:
        """The config's main fields, shown at the root."""
        if self.config_path is None:
            return []
        rows = describe_hf_config(self.config_path)
        return [("format", "Hugging Face config (no weights)"), *rows]

    def build_structure(self, seed: int | None = None) -> tuple[nn.Module, bool]:
        # Never the real build as a fallback: for a 7B config that is 28 GB of random numbers.
        with on_meta(), counted(self.label, MAX_CONFIG_MODULES, MAX_CONFIG_TENSORS):
            return self._call_builder(), True


def resolve_hf_config(config: Path) -> HFConfigSource:
    """The architecture of `config` (a config.json), or a SourceError saying why not. A config
    that names code of its own is refused: transformers builds only its own classes here."""
    if custom_code(config):
        raise SourceError(
            f"{config.parent}: {CUSTOM_CODE}; with its weights it opens as their keys"
        )
    if not transformers_installed():
        raise SourceError(
            f"building the model in {config} needs transformers, which is not installed "
            f"({INSTALL_HINT})"
        )
    config_object, cls = _config_and_class(config)
    problem = config_count_problem(config_object.to_dict(), str(config))
    if problem is not None:
        raise SourceError(problem)  # before a build that would run for minutes
    name = cls.__name__ if isinstance(cls, type) else "AutoModel"

    def build() -> nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model: nn.Module = cls._from_config(config_object)
        return model

    return HFConfigSource(
        spec=str(config.resolve()),
        kind="huggingface",
        label=f"{name} ({config.parent.name}/config.json)",
        builder=build,
        config_path=config,
    )


def _config_and_class(config: Path) -> tuple[Any, Any]:
    import transformers
    from transformers.utils import logging as hf_logging

    # Its notes on config values would print over the app.
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        # Never the folder's own code, and never a prompt asking whether to run it.
        config_object = transformers.AutoConfig.from_pretrained(
            str(config.parent), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # transformers raises ValueError, OSError, KeyError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"transformers cannot read {config}: {first}") from None
    for name in getattr(config_object, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            return config_object, cls
    try:
        auto = transformers.AutoModel._model_mapping[type(config_object)]
    except Exception:
        names = ", ".join(getattr(config_object, "architectures", None) or []) or "none"
        raise SourceError(
            f"transformers has no model class for {config} (architectures: {names}; "
            "models with their own code are not run)"
        ) from None
    return config_object, auto
