"""Model sources: a torchvision name or an import path, resolved to a builder.

A source builds its model twice when it can: first on the `meta` device (structure, shapes and
counts in milliseconds, no memory), then for real in a worker (`build_real`).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_parameter_registration_hook,
)

from modelbrowse.core.arguments import InputShape
from modelbrowse.core.errors import SourceError, UsageError
from modelbrowse.core.nodes import USER_FILE_MODULE
from modelbrowse.core.sources.meta_build import gc_paused, on_meta

if TYPE_CHECKING:
    from modelbrowse.core.sources.files import CheckpointOptions
    from modelbrowse.core.sources.fit import FitReport

_TORCHVISION_FIX = (
    "torchvision does not work with the installed torch ({reason}); install builds that match, "
    "for example `pip install --force-reinstall torch torchvision` from one index"
)

# Default example inputs for torchvision families, keyed by the builder's module.
_IMAGE = ((1, 3, 224, 224),)
_DEFAULT_INPUTS: dict[str, InputShape] = {
    "torchvision.models.inception": ((1, 3, 299, 299),),
    "torchvision.models.quantization.inception": ((1, 3, 299, 299),),
    "torchvision.models.video.resnet": ((1, 3, 16, 112, 112),),
    "torchvision.models.video.s3d": ((1, 3, 16, 224, 224),),
    "torchvision.models.video.mvit": ((1, 3, 16, 224, 224),),
    "torchvision.models.video.swin_transformer": ((1, 3, 16, 224, 224),),
    "torchvision.models.optical_flow.raft": ((1, 3, 128, 128), (1, 3, 128, 128)),
}


@dataclass
class Source:
    """A resolved model source: how to build the model, and how to describe where it came from."""

    spec: str
    kind: str  # "torchvision" or "import"
    label: str
    builder: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    default_input: InputShape | None = None
    instance: nn.Module | None = None
    build_warnings: list[str] = field(default_factory=list)

    # --- what the app shows about a source. The defaults fit a model built from code; sources
    # read from files (a checkpoint, a Hugging Face config) override them.

    info_title: ClassVar[str] = "checkpoint"
    """The heading of `info` in the root's details."""

    @property
    def info(self) -> list[tuple[str, str]]:
        """Label and value rows shown below the root's details (format, epoch, metadata)."""
        return []

    @property
    def warnings(self) -> list[str]:
        """What the file's reader noticed; the first one shows in the header."""
        return []

    @property
    def fit(self) -> FitReport | None:
        """How a checkpoint's tensors fit the architecture they were loaded into, or None."""
        return None

    @property
    def files(self) -> list[Path]:
        """The files the model was read from (overwriting one asks twice)."""
        return []

    @property
    def weights_only(self) -> bool:
        """Tensors without an architecture: only weight edits make sense."""
        return False

    @property
    def edit_refusal(self) -> str | None:
        """Why no edit applies to this model at all, or None."""
        return None

    @property
    def marks(self) -> dict[str, str]:
        """A mark for some paths in the tree (a module a PEFT adapter updates)."""
        return {}

    def detail_note(self, path: str) -> tuple[str, str] | None:
        """A titled note the detail pane shows for `path` (an adapted module's update), or None."""
        return None

    @property
    def print_text(self) -> str:
        """What `--print` adds after the tree (an adapter's modules); empty for most sources."""
        return ""

    @property
    def write_refusal(self) -> str | None:
        """Why the weights cannot be written at all (a format shown read-only), or None."""
        return None

    @property
    def random_values(self) -> bool:
        """Whether the values are a random initialisation (the same --seed repeats them)."""
        return self.weights is None and self.instance is None

    def record(self, init_seed: int | None) -> dict[str, Any]:
        """The source as a recipe stores it (JSON-friendly): enough to resolve and build it
        again. `init_seed` is the seed its random values were drawn with, if any."""
        spec = self.spec
        if self.kind == "import":
            module_part, _, attr = spec.rpartition(":")
            if module_part.endswith(".py"):  # a file: absolute, so it resolves from anywhere
                spec = f"{Path(module_part).expanduser().resolve()}:{attr}"
        return {
            "kind": self.kind,
            "spec": spec,
            "kwargs": {name: repr(value) for name, value in self.kwargs.items()},
            "weights": self.weights,
            "init_seed": init_seed,
            "reproducible": self.reproducible,
        }

    def build_structure(self, seed: int | None = None) -> tuple[nn.Module, bool]:
        """Build the model cheaply: on `meta` where possible. Returns (model, is_meta).

        Where it cannot be built on `meta`, it is built for real, with `seed`.
        """
        if self.instance is not None:
            return self.instance, False
        if self.weights is None:
            model = _build_on_meta(lambda: self._call_builder())
            if model is not None:
                return model, True
        return self.build_real(seed), False

    def build_real(self, seed: int | None = None) -> nn.Module:
        """Build the model with real tensors (random initialisation, or downloaded weights).

        With a seed, random initialisation is reproducible: the same seed gives the same bytes.
        The caller's random state is left as it was.
        """
        if self.instance is not None:
            return self.instance
        if seed is None:
            with gc_paused():
                return self._call_builder()
        with torch.random.fork_rng(devices=[]), gc_paused():
            torch.manual_seed(seed)
            return self._call_builder()

    def build_with_real_buffers(self) -> nn.Module | None:
        """Parameters on `meta`, buffers real: for taking a checkpoint's parameters by
        assignment when the model computes buffers the checkpoint does not hold. None when the
        builder cannot run so."""
        if self.instance is not None or self.weights is not None:
            return None
        try:
            with _parameters_on_meta(buffers=False):
                return self._call_builder()
        except SourceError:
            return None

    @property
    def reproducible(self) -> bool:
        """Whether building again gives the same tensors (a given instance cannot be rebuilt)."""
        return self.instance is None

    def _call_builder(self) -> nn.Module:
        kwargs = dict(self.kwargs)
        if self.kind == "torchvision":
            kwargs.setdefault("weights", self.weights)
            if "weights_backbone" in inspect.signature(self.builder).parameters:
                kwargs.setdefault("weights_backbone", None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = self.builder(**kwargs)
            except SourceError:
                raise
            except Exception as exc:  # a user's constructor can raise anything
                raise SourceError(_build_failure(self, exc)) from exc
        for warning in caught:
            text = str(warning.message).splitlines()[0] if str(warning.message) else ""
            if text and text not in self.build_warnings:
                self.build_warnings.append(text)
        if not isinstance(result, nn.Module):
            raise SourceError(f"{self.label} returned {type(result).__name__}, not an nn.Module")
        return result


def _build_failure(source: Source, exc: Exception) -> str:
    text = _one_line(exc)
    if source.weights is not None and _looks_like_network_error(exc):
        return f"could not download weights {source.weights} for {source.label}: {text}"
    return f"building {source.label} failed: {text}"


def _looks_like_network_error(exc: BaseException) -> bool:
    import urllib.error

    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, (urllib.error.URLError, ConnectionError, TimeoutError, OSError)):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


def _one_line(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    first = message[0] if message else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


@contextlib.contextmanager
def _parameters_on_meta(buffers: bool = True) -> Iterator[None]:
    """Put parameters (and buffers, unless told not to) on `meta` as they are registered; other
    tensors stay real.

    For builders that compute on tensors while constructing (torchvision's RegNet does), where a
    global `meta` device fails with "Cannot copy out of meta tensor"; and, with real buffers, for
    models whose buffers are computed, not saved (rotary embeddings' `inv_freq`). torch's
    registration hooks are global, so they act only on the thread that builds.
    """
    builder = threading.get_ident()
    # The meta twin of each real parameter, so one registered twice (a tie) stays one object.
    twins: dict[int, tuple[nn.Parameter, nn.Parameter]] = {}

    def on_parameter(_module: nn.Module, _name: str, param: nn.Parameter) -> nn.Parameter | None:
        if threading.get_ident() != builder or param.is_meta:
            return None
        if id(param) not in twins:
            twin = type(param)(param.to("meta"), requires_grad=param.requires_grad)
            twins[id(param)] = (param, twin)  # the real one is kept so its id is not reused
        return twins[id(param)][1]

    def on_buffer(_module: nn.Module, _name: str, tensor: torch.Tensor) -> torch.Tensor | None:
        if threading.get_ident() != builder or tensor.is_meta:
            return None
        return tensor.to("meta")

    # torch declares these hooks as returning None, though what they return replaces the tensor.
    with contextlib.ExitStack() as hooks:
        parameter_hook = register_module_parameter_registration_hook(on_parameter)  # type: ignore[arg-type]
        hooks.callback(parameter_hook.remove)
        if buffers:
            buffer_hook = register_module_buffer_registration_hook(on_buffer)  # type: ignore[arg-type]
            hooks.callback(buffer_hook.remove)
        yield


def _build_on_meta(build: Callable[[], nn.Module]) -> nn.Module | None:
    """Build on the meta device, or return None when the builder cannot run there."""
    for context in (on_meta, _parameters_on_meta):
        try:
            with context():
                return build()
        except SourceError:
            # Some constructors cannot run on meta; a real failure shows again in build_real.
            continue
    return None


# --- resolving a spec ------------------------------------------------------------------------


def resolve_source(
    spec: str,
    kwargs: dict[str, Any] | None = None,
    weights: str | None = None,
    *,
    arch: str | None = None,
    checkpoint: CheckpointOptions | None = None,
) -> Source:
    """Resolve a command-line source: `alexnet`, `pkg.module:attr`, `./net.py:Net`, or a
    checkpoint file or folder (optionally loaded into the architecture `arch`)."""
    from modelbrowse.core.sources.files import looks_like_path

    kwargs = dict(kwargs or {})
    spec = spec.strip()
    if not spec:
        raise SourceError("no model given")
    if spec.startswith("hf:"):
        from modelbrowse.core.sources.checkpoint import resolve_path
        from modelbrowse.core.sources.hf_hub import resolve_hub_snapshot

        return resolve_path(str(resolve_hub_snapshot(spec)), kwargs, weights, arch, checkpoint)
    if looks_like_path(spec):
        from modelbrowse.core.sources.checkpoint import resolve_path

        return resolve_path(spec, kwargs, weights, arch, checkpoint)
    flags = (["--arch"] if arch is not None else []) + (checkpoint.flags() if checkpoint else [])
    if flags:
        verb = "apply" if len(flags) > 1 else "applies"
        raise UsageError(f"{', '.join(flags)} {verb} to a checkpoint file or folder")
    if spec.startswith("timm:"):
        from modelbrowse.core.sources.timm_models import resolve_timm

        if weights is not None:
            raise UsageError("--weights applies to torchvision models only")
        return resolve_timm(spec, kwargs)
    if ":" in spec:
        if weights is not None:
            raise UsageError("--weights applies to torchvision models only")
        return _resolve_import(spec, kwargs)
    return _resolve_torchvision(spec, kwargs, weights)


def import_torchvision_models() -> ModuleType:
    """Import `torchvision.models`, turning a broken install into one clear line."""
    try:
        import torchvision.models as models
    except ModuleNotFoundError as exc:
        raise SourceError(
            "torchvision is not installed; `pip install torchvision` to open zoo models "
            "(import paths such as pkg.module:Net work without it)"
        ) from exc
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(_TORCHVISION_FIX.format(reason=reason)) from exc
    return models  # type: ignore[no-any-return]


def torchvision_names() -> list[str]:
    """Every name torchvision's model registry knows."""
    names: list[str] = import_torchvision_models().list_models()
    return sorted(names)


def _resolve_torchvision(spec: str, kwargs: dict[str, Any], weights: str | None) -> Source:
    models = import_torchvision_models()
    names = models.list_models()
    by_lower = {name.lower(): name for name in names}
    name = by_lower.get(spec.lower())
    if name is None:
        from modelbrowse.core.sources.timm_models import timm_suggestion

        close = difflib.get_close_matches(spec.lower(), list(by_lower), n=3, cutoff=0.6)
        from modelbrowse.core.sources.hf_hub import hub_suggestion

        # A timm model torchvision does not have, or a repository in the Hugging Face cache.
        others = [s for s in (timm_suggestion(spec), hub_suggestion(spec)) if s]
        names = others + [by_lower[c] for c in close]
        hint = f" (did you mean: {', '.join(names)}?)" if names else ""
        raise SourceError(f"unknown model '{spec}'{hint}")
    builder = models.get_model_builder(name)
    resolved_weights = _resolve_weights(models, name, weights) if weights else None
    return Source(
        spec=name,
        kind="torchvision",
        label=name,
        builder=builder,
        kwargs=kwargs,
        weights=resolved_weights,
        default_input=_DEFAULT_INPUTS.get(builder.__module__, _IMAGE),
    )


def _resolve_weights(models: ModuleType, name: str, weights: str) -> str:
    """Validate a weights name (`DEFAULT`, `IMAGENET1K_V1`, `AlexNet_Weights.IMAGENET1K_V1`)."""
    try:
        enum = models.get_model_weights(name)
    except Exception as exc:
        raise UsageError(f"{name} has no pretrained weights") from exc
    member = weights.split(".", 1)[1] if weights.startswith(enum.__name__ + ".") else weights
    available = ["DEFAULT", *(w.name for w in enum)]
    if member.upper() == "DEFAULT":
        return f"{enum.__name__}.{enum.DEFAULT.name}"
    if member not in enum.__members__:
        raise UsageError(
            f"unknown weights '{weights}' for {name} (available: {', '.join(available)})"
        )
    return f"{enum.__name__}.{member}"


def _resolve_import(spec: str, kwargs: dict[str, Any]) -> Source:
    module_part, _, attr_path = spec.rpartition(":")
    if not module_part or not attr_path:
        raise SourceError(f"'{spec}' is not of the form package.module:attr or file.py:attr")
    module = _import_module(module_part, spec)
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SourceError(f"{spec}: '{module_part}' has no attribute '{attr_path}'") from None
    if isinstance(target, nn.Module):
        if kwargs:
            raise UsageError(f"{spec} is a module instance: --kw does not apply")
        return Source(spec, "import", spec, builder=lambda: target, instance=target)
    if isinstance(target, type) and not issubclass(target, nn.Module):
        raise SourceError(f"{spec} is the class {target.__name__}, not an nn.Module subclass")
    if not callable(target):
        raise SourceError(
            f"{spec} is a {type(target).__name__}, not an nn.Module, class or factory"
        )
    return Source(spec, "import", spec, builder=target, kwargs=kwargs)


def _import_module(module_part: str, spec: str) -> ModuleType:
    is_file = module_part.endswith(".py") or "/" in module_part or "\\" in module_part
    try:
        if is_file:
            return _import_file(Path(module_part), spec)
        return importlib.import_module(module_part)
    except SourceError:
        raise
    except Exception as exc:  # importing user code can raise anything
        raise SourceError(f"cannot import {module_part!r} for {spec}: {_one_line(exc)}") from exc


def _import_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise SourceError(f"{spec}: no such file '{path}'")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    name = f"{USER_FILE_MODULE}{resolved.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    file_spec = importlib.util.spec_from_file_location(name, resolved)
    if file_spec is None or file_spec.loader is None:
        raise SourceError(f"{spec}: cannot load '{path}' as Python")
    module = importlib.util.module_from_spec(file_spec)
    # Sibling imports in the user's file should work as they do when it runs as a script.
    sys.path.insert(0, str(resolved.parent))
    sys.modules[name] = module
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(resolved.parent))
    return module
