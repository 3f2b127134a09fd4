"""A checkpoint as a model source: its weights as a tree, or loaded into an architecture."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbrowse.core.errors import SourceError, UsageError
from modelbrowse.core.reading.adapters import adapter_weights
from modelbrowse.core.sources.base import Source
from modelbrowse.core.sources.files import (
    Checkpoint,
    CheckpointOptions,
    open_checkpoint,
)
from modelbrowse.core.sources.fit import FitReport, fit_report, no_fit_lines
from modelbrowse.core.sources.hf_models import resolve_hf_config
from modelbrowse.core.sources.key_rules import (
    CUSTOM_CODE,
    INSTALL_HINT,
    QUANTIZED_ARCHITECTURE,
    config_file,
    custom_code,
    holds_weights,
    transformers_installed,
)
from modelbrowse.core.sources.scripted import ScriptedModule
from modelbrowse.core.sources.weights_tree import tree_from_state_dict
from modelbrowse.core.tensor_bytes import check_files_hold
from modelbrowse.core.ties import restore_ties, tied_groups


@dataclass
class CheckpointSource(Source):
    """`modelbrowse best.pth [--arch resnet50]`."""

    checkpoint: Checkpoint | None = None
    arch: Source | None = None
    options: CheckpointOptions = field(default_factory=CheckpointOptions)
    fit: FitReport | None = None
    # The architecture came from the folder's config.json, not --arch: when it cannot be built
    # or nothing fits, the weights' tree is shown instead of an error.
    arch_from_config: bool = False

    @property
    def loaded(self) -> Checkpoint:
        assert self.checkpoint is not None
        return self.checkpoint

    @property
    def files(self) -> list[Path]:
        return list(self.loaded.files)

    @property
    def info(self) -> list[tuple[str, str]]:
        rows = [("format", self.loaded.format), *self.loaded.info]
        if self.fit is not None:
            rows.insert(1, ("fit", self.fit.summary()))
        if self.weights_only:
            rows.append(("tensor kinds", "parameter or buffer guessed from the names"))
        return rows

    @property
    def warnings(self) -> list[str]:
        return list(self.loaded.warnings)

    @property
    def weights_only(self) -> bool:
        """Opened without an architecture (and not a whole model)."""
        return self.arch is None and self.loaded.module is None

    @property
    def edit_refusal(self) -> str | None:
        """A TorchScript model is compiled code, and quantized GGUF weights would need
        re-quantizing: nothing in them can be edited."""
        if self.loaded.read_only is not None:
            return self.loaded.read_only
        if isinstance(self.loaded.module, (torch.jit.ScriptModule, ScriptedModule)):
            return (
                "a TorchScript model is compiled code and cannot be edited; write its weights "
                "(w) and open them with --arch NAME to edit"
            )
        return None

    @property
    def write_refusal(self) -> str | None:
        return self.loaded.read_only

    @property
    def random_values(self) -> bool:
        return False

    def record(self, init_seed: int | None) -> dict[str, Any]:
        options = self.options
        return {
            "kind": self.kind,
            "spec": str(Path(self.spec).expanduser().resolve()),
            "kwargs": {},
            "weights": None,
            "init_seed": init_seed,
            "reproducible": True,
            "format": self.loaded.format,
            "whole_model": self.loaded.module is not None,
            "arch": self.arch.record(init_seed) if self.arch else None,
            "checkpoint": {
                "key": options.key,
                "keep_prefix": options.keep_prefix,
                "strip_prefix": options.strip_prefix,
                "trust_pickle": options.trust_pickle,
                "keys_only": options.keys_only,
            },
        }

    def build_structure(self, seed: int | None = None) -> tuple[nn.Module, bool]:
        checkpoint = self.loaded
        if self.arch is None:
            if checkpoint.module is not None:
                return checkpoint.module, False
            return _keys_tree(checkpoint, checkpoint.tensors), checkpoint.load_data is not None
        try:
            model, is_meta = self.arch.build_structure(seed)
            self._check_fit(model)
        except SourceError as exc:
            if not self.arch_from_config:
                raise
            checkpoint.info.append(("architecture", f"not used: {exc}"))
            self.arch = None
            return self.build_structure(seed)
        if not is_meta:
            self._load_into(model)
            return model, False
        if checkpoint.load_data is None and self._fit.fits:
            if _assign_matching(model, checkpoint.tensors, self._fit):
                return model, False
            if not any(p.is_meta for p in model.parameters()):
                # Only computed buffers are left (rotary `inv_freq`): build them for real.
                again = self.arch.build_with_real_buffers()
                if again is not None and _assign_matching(again, checkpoint.tensors, self._fit):
                    return again, False
        return model, True

    def build_real(self, seed: int | None = None) -> nn.Module:
        checkpoint = self.loaded
        if self.arch is None:
            if checkpoint.module is not None:
                return checkpoint.module
            return _keys_tree(checkpoint, checkpoint.read_all())
        model = self.arch.build_real(seed)
        self._check_fit(model)
        self._load_into(model)
        return model

    @property
    def _fit(self) -> FitReport:
        assert self.fit is not None
        return self.fit

    def _check_fit(self, model: nn.Module) -> None:
        if self.fit is not None:
            return
        assert self.arch is not None
        report = fit_report(
            self.arch.label, model.state_dict(), self.loaded.tensors, tied_groups(model)
        )
        if not report.loaded:
            hint = f"; {report.prefix_hint.removeprefix('hint: ')}" if report.prefix_hint else ""
            # The prefix, where one fits, says what to do; else the closest names show how
            # the two sides differ.
            details = no_fit_lines(
                model.state_dict(), self.loaded.tensors, closest=not report.prefix_hint
            )
            raise SourceError(
                f"none of the {len(self.loaded.tensors)} tensors in {self.loaded.path} "
                f"fit {self.arch.label}{hint}\n" + "\n".join(details)
            )
        self.fit = report

    def _load_into(self, model: nn.Module) -> None:
        """Copy the tensors that fit; the rest stay as initialised."""
        state = self.loaded.read_all()
        chosen = {key: state[key] for key in self._fit.loaded}
        check_files_hold(chosen)  # copied from a mapped file: truncated since, an error line
        model.load_state_dict(chosen, strict=False)


def _keys_tree(checkpoint: Checkpoint, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The tree of the keys; a key it cannot place says why a quantized layer was left as
    stored keys, where that is the cause (bitsandbytes' `weight` and `weight.absmax`)."""
    try:
        return tree_from_state_dict(tensors, checkpoint.quantized_keys)
    except SourceError as exc:
        found = checkpoint.quantized_keys
        if found is not None and found.problems:
            why = found.problems[0]
            raise SourceError(f"{exc} (a quantized layer left as stored keys: {why})") from None
        raise


def _assign_matching(model: nn.Module, tensors: dict[str, torch.Tensor], fit: FitReport) -> bool:
    """Take the file's tensors into a meta model without copying; True when nothing is left on
    meta (else the model needs a real build: missing keys, mismatches, non-persistent buffers)."""
    if not fit.fits:
        return False
    expected = model.state_dict()
    ties = tied_groups(model)
    state = {key: tensors[key] for key in fit.loaded}
    # Taken as they are, the tensors are not read; a conversion reads a mapped file's bytes.
    converted = {k: t for k, t in state.items() if t.dtype != expected[k].dtype}
    check_files_hold(converted)
    for key, tensor in converted.items():
        state[key] = tensor.to(expected[key].dtype)  # what load_state_dict's copy would do
    model.load_state_dict(state, strict=False, assign=True)
    restore_ties(model, ties)
    return not any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def resolve_path(
    spec: str,
    kwargs: dict[str, Any],
    weights: str | None,
    arch: str | None,
    options: CheckpointOptions | None,
) -> Source:
    """A file or folder: a checkpoint, a PEFT adapter, or a Hugging Face config alone (an
    architecture)."""
    path = Path(spec).expanduser()
    if path.is_dir() and adapter_weights(path) is not None:
        from modelbrowse.core.sources.adapters import resolve_adapter

        return resolve_adapter(spec, kwargs, weights, arch, options)
    config = config_file(path) if path.exists() else None
    if config is not None and (path.is_file() or not holds_weights(path)):
        flags = (["--arch"] if arch else []) + (options.flags() if options else [])
        if flags or kwargs or weights:
            given = ", ".join(
                flags + (["--kw"] if kwargs else []) + (["--weights"] if weights else [])
            )
            raise UsageError(f"{given}: {spec} is a config without weights; nothing to load")
        return resolve_hf_config(config)
    return resolve_checkpoint(spec, kwargs, weights, arch, options)


def _config_architecture(checkpoint: Checkpoint) -> Source | None:
    """A Hugging Face folder's architecture, built by transformers when it is installed."""
    folder = checkpoint.path if checkpoint.path.is_dir() else checkpoint.path.parent
    config = config_file(folder) if checkpoint.format.startswith("Hugging Face") else None
    if config is None:
        return None
    if checkpoint.quantized_keys is not None:
        checkpoint.info.append(("architecture", QUANTIZED_ARCHITECTURE))
        return None
    if custom_code(config):
        checkpoint.info.append(("architecture", f"from the keys: {CUSTOM_CODE}"))
        return None
    if not transformers_installed():
        checkpoint.info.append(
            ("architecture", f"from the keys; {INSTALL_HINT} builds it from config.json")
        )
        return None
    try:
        source = resolve_hf_config(config)
    except SourceError as exc:
        checkpoint.info.append(("architecture", f"not built: {exc}"))
        return None
    checkpoint.info.insert(0, ("architecture", f"{source.label}, built by transformers"))
    return source


def resolve_checkpoint(
    spec: str,
    kwargs: dict[str, Any],
    weights: str | None,
    arch: str | None,
    options: CheckpointOptions | None,
) -> CheckpointSource:
    """Open the file or folder now (headers only); the architecture, if any, is resolved too."""
    from modelbrowse.core.sources.base import resolve_source

    options = options or CheckpointOptions()
    arch_source = resolve_source(arch, kwargs, weights) if arch else None
    if arch_source is None and kwargs:
        raise SourceError("--kw applies to an architecture: add --arch NAME for the checkpoint")
    checkpoint = open_checkpoint(spec, options)
    if arch_source is not None and checkpoint.module is not None:
        raise SourceError(
            f"{spec} holds a whole model ({checkpoint.format}): --arch does not apply"
        )
    if arch_source is not None and checkpoint.quantized:
        raise SourceError(
            f"{spec} is {checkpoint.format} with quantized weights: --arch does not apply "
            "(they cannot be loaded into a model)"
        )
    from_config = None
    if arch_source is not None and options.keys_only:
        raise UsageError("--keys-only and --arch contradict each other: choose one")
    if arch_source is None and checkpoint.module is None and not options.keys_only:
        from_config = _config_architecture(checkpoint)
    label = Path(spec).name + (f" into {arch_source.label}" if arch_source else "")
    return CheckpointSource(
        spec=spec,
        kind="checkpoint",
        label=label,
        builder=lambda: None,
        default_input=arch_source.default_input if arch_source else None,
        checkpoint=checkpoint,
        arch=arch_source or from_config,
        options=options,
        arch_from_config=from_config is not None,
    )
