"""PEFT adapter folders as a source: the adapter's tensors alone, or its base model's tree with
each adapted module marked and its rank, scaling and the norm of its update in the detail pane.

The base is `--arch BASE`, or the model `base_model_name_or_path` names when the local Hugging
Face cache holds it (never the network). An adapter is shown read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from modelbrowse.core.errors import SourceError, UsageError
from modelbrowse.core.reading.adapters import (
    CONFIG_NAME,
    AdapterConfig,
    adapter_weights,
    read_adapter_config,
)
from modelbrowse.core.sources.adapter_layout import (
    MARK_ADAPTED,
    MARK_SAVED,
    AdapterLayout,
    adapter_layout,
    adapter_rows,
    adapter_warnings,
    base_text,
    cached_base,
    lora_note,
)
from modelbrowse.core.sources.base import Source
from modelbrowse.core.sources.files import CheckpointOptions, open_file
from modelbrowse.core.sources.hf_hub import PREFIX
from modelbrowse.core.sources.weights_tree import tree_from_state_dict
from modelbrowse.core.units import printable

READ_ONLY = (
    "a PEFT adapter is shown read-only: open its adapter_model file alone to edit its tensors"
)
TENSOR_KINDS = ("tensor kinds", "parameter or buffer guessed from the names")


@dataclass
class AdapterSource(Source):
    """`modelbrowse ADAPTER_FOLDER [--arch BASE]`."""

    info_title: ClassVar[str] = "adapter"

    folder: Path = field(default_factory=Path)
    weights_file: Path = field(default_factory=Path)
    config: AdapterConfig = field(default_factory=lambda: AdapterConfig("LORA"))
    layout: AdapterLayout = field(default_factory=lambda: adapter_layout(AdapterConfig("LORA"), {}))
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    file_format: str = ""
    file_rows: list[tuple[str, str]] = field(default_factory=list)
    file_warnings: list[str] = field(default_factory=list)  # a trusted pickle's
    base: Source | None = None
    base_row: str = ""
    # Known once the base is built: its modules' paths and its parameter count.
    base_paths: list[str] | None = None
    base_params: int | None = None
    _norms: dict[str, float | None] = field(default_factory=dict)

    @property
    def info(self) -> list[tuple[str, str]]:
        rows = [("format", f"PEFT adapter ({self.file_format})")]
        rows += adapter_rows(self.layout, self.base_row, self.base_params)
        rows += self.file_rows
        return rows + ([TENSOR_KINDS] if self.base is None else [])

    @property
    def warnings(self) -> list[str]:
        return self.file_warnings + adapter_warnings(self.layout, self.base_paths)

    @property
    def files(self) -> list[Path]:
        return [self.weights_file, self.folder / CONFIG_NAME]

    @property
    def weights_only(self) -> bool:
        return self.base is None

    @property
    def edit_refusal(self) -> str | None:
        return READ_ONLY

    @property
    def write_refusal(self) -> str | None:
        return READ_ONLY

    @property
    def random_values(self) -> bool:
        return self.base is not None and self.base.random_values

    @property
    def marks(self) -> dict[str, str]:
        marks = {path: MARK_SAVED for path in self.layout.saved}
        marks.update({path: MARK_ADAPTED for path in self.layout.modules})
        if self.base_paths is not None:
            shown = set(self.base_paths)
            return {path: mark for path, mark in marks.items() if path in shown}
        return marks

    def detail_note(self, path: str) -> tuple[str, str] | None:
        module = self.layout.modules.get(path)
        if module is not None:
            return "LoRA", lora_note(module, self.config, self.update_norm(path))
        saved = self.layout.saved.get(path)
        if saved is not None:
            count = sum(self.tensors[k].numel() for k in saved)
            return "adapter copy", f"modules_to_save: the adapter holds its own {count:,} values"
        return None

    @property
    def print_text(self) -> str:
        """The adapted modules, one line each, for `--print`."""
        modules = list(self.layout.modules.values())
        if not modules:
            return ""
        rows = [
            (
                printable(m.path) or "(root)",
                f"A {_shape(m.a)}",
                f"B {_shape(m.b)}",
                f"rank {m.rank}",
                f"scaling {m.scaling:.4g}",
                _norm_text(self.update_norm(m.path)),
            )
            for m in modules
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(6)]
        lines = ["", f"adapted modules ({len(modules)}), ‖B·A‖·scaling:"]
        for row in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        lines = [line.rstrip() for line in lines]
        return "\n".join(lines) + "\n"

    def update_norm(self, path: str) -> float | None:
        """`||B @ A|| * scaling` of the module's update (Frobenius), None where A and B do not
        multiply. From the r-by-r Gram matrices: B @ A itself may be as large as the weight."""
        if path not in self._norms:
            module = self.layout.modules[path]
            self._norms[path] = None
            if module.a_key and module.b_key:
                a = self.tensors[module.a_key].detach().reshape(module.rank, -1).double()
                b = self.tensors[module.b_key].detach().reshape(module.b[0], -1).double()
                if b.shape[1] == a.shape[0]:
                    squared = float(((b.T @ b) * (a @ a.T)).sum())
                    self._norms[path] = math.sqrt(max(squared, 0.0)) * abs(module.scaling)
        return self._norms[path]

    def build_structure(self, seed: int | None = None) -> tuple[nn.Module, bool]:
        if self.base is None:
            return tree_from_state_dict(self.tensors), False
        model, is_meta = self.base.build_structure(seed)
        self._take_base(model)
        return model, is_meta

    def build_real(self, seed: int | None = None) -> nn.Module:
        if self.base is None:
            return tree_from_state_dict(self.tensors)
        model = self.base.build_real(seed)
        self._take_base(model)
        return model

    def _take_base(self, model: nn.Module) -> None:
        """The base's modules and size, and which adapted modules it lacks or does not fit."""
        if self.base_paths is not None:
            return
        modules = dict(model.named_modules())
        self.base_paths = list(modules)
        self.base_params = sum(p.numel() for p in model.parameters())
        for path, module in self.layout.modules.items():
            found = modules.get(path)
            weight = getattr(found, "weight", None)
            if found is None:
                self.layout.problems.append(f"{path}: no such module in the base")
            elif (
                isinstance(weight, torch.Tensor)
                and module.a
                and module.b
                and math.prod(module.a[1:]) * module.b[0] != weight.numel()
            ):
                self.layout.problems.append(
                    f"{path}: A {_shape(module.a)} and B {_shape(module.b)} do not fit "
                    f"the base's weight {_shape(tuple(weight.shape))}"
                )


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _norm_text(norm: float | None) -> str:
    return "-" if norm is None else f"{norm:.6g}"


def resolve_adapter(
    spec: str,
    kwargs: dict[str, Any],
    weights: str | None,
    arch: str | None,
    options: CheckpointOptions | None,
) -> AdapterSource:
    """The adapter folder `spec`, on `--arch BASE` or the cached base it names, if any."""
    from modelbrowse.core.sources.base import resolve_source

    folder = Path(spec).expanduser()
    options = options or CheckpointOptions()
    flags = [f for f in options.flags() if f not in ("--device", "--trust-pickle")]
    if flags:
        raise UsageError(f"{', '.join(flags)}: {spec} is a PEFT adapter folder; leave them out")
    base = resolve_source(arch, kwargs, weights) if arch else None
    if base is None and (kwargs or weights):
        raise UsageError("--kw and --weights apply to the base: add --arch BASE")
    config = read_adapter_config(folder)
    weights_file = adapter_weights(folder)
    assert weights_file is not None  # told so by the caller
    trusted = CheckpointOptions(trust_pickle=options.trust_pickle)
    checkpoint = open_file(weights_file, trusted, options.device or "cpu")
    layout = adapter_layout(config, {k: tuple(t.shape) for k, t in checkpoint.tensors.items()})
    base_row = f"{arch} (--arch)" if arch else base_text(config)
    if base is None:
        base, base_row = _cached_base(config, base_row)
    label = folder.name + (f" on {base.label}" if base is not None else "")
    return AdapterSource(
        spec=spec,
        kind="adapter",
        label=label,
        builder=lambda: None,
        default_input=base.default_input if base is not None else None,
        folder=folder,
        weights_file=weights_file,
        config=config,
        layout=layout,
        tensors={layout.renamed[k]: t for k, t in checkpoint.tensors.items()},
        file_format=checkpoint.format,
        file_rows=list(checkpoint.info),
        file_warnings=list(checkpoint.warnings),
        base=base,
        base_row=base_row,
    )


def _cached_base(config: AdapterConfig, row: str) -> tuple[Source | None, str]:
    """The base from the local Hugging Face cache, with the row that says so."""
    from modelbrowse.core.sources.checkpoint import resolve_path

    snapshot = cached_base(config)
    if snapshot is None:
        return None, row
    name = f"{PREFIX}{config.base_model}"
    try:
        return resolve_path(str(snapshot), {}, None, None, None), f"{name}, from the local cache"
    except SourceError as exc:
        return None, f"{name}: not opened ({exc})"
