"""A PEFT adapter's keys read as what they adapt: per module its LoRA A and B, rank and scaling;
the modules it holds whole copies of (`modules_to_save`); the names the config gives that
matched nothing. Torch-free: the tree read before torch shows the same rows.

Regular expressions from a config (a `target_modules` string, an `alpha_pattern` key with
pattern syntax) are never run: their time is unbounded on hostile input. Plain names match as
PEFT matches them, the whole path or its end after a dot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modelbrowse.core.errors import SourceError
from modelbrowse.core.reading.adapters import AdapterConfig, adapter_weights
from modelbrowse.core.sources.hf_hub import PREFIX, resolve_hub_snapshot

PEFT_PREFIX = "base_model.model."
# The key parts of a LoRA module's tensors: part -> A, B or the DoRA magnitude.
LORA_PARTS = {
    "lora_A": "A",
    "lora_B": "B",
    "lora_embedding_A": "A",
    "lora_embedding_B": "B",
    "lora_magnitude_vector": "m",
}
MARK_ADAPTED = "Δ"  # a module with a LoRA update
MARK_SAVED = "≡"  # a module the adapter holds a whole copy of
_PLAIN_NAME = re.compile(r"^[\w.-]+$")
VALUE_LIMIT = 120
Row = tuple[str, str]


@dataclass
class LoraModule:
    """One adapted module: its A and B (shapes and keys), its alpha and scaling."""

    path: str
    a: tuple[int, ...] = ()
    b: tuple[int, ...] = ()
    keys: list[str] = field(default_factory=list)
    a_key: str = ""
    b_key: str = ""
    magnitude: tuple[int, ...] | None = None
    embedding: bool = False
    alpha: float = 0.0
    scaling: float = 0.0

    @property
    def rank(self) -> int:
        return self.a[0] if self.a else 0

    @property
    def kind(self) -> str:
        if self.embedding:
            return "embedding"
        return "convolution" if len(self.a) > 2 else "linear"


@dataclass
class AdapterLayout:
    """What an adapter's keys hold, under the keys the tree shows."""

    config: AdapterConfig
    renamed: dict[str, str]  # key in the file -> key shown (the PEFT prefix stripped)
    modules: dict[str, LoraModule] = field(default_factory=dict)
    saved: dict[str, list[str]] = field(default_factory=dict)  # modules_to_save copies
    params: int = 0
    problems: list[str] = field(default_factory=list)
    unevaluated: list[str] = field(default_factory=list)  # patterns not run

    @property
    def is_lora(self) -> bool:
        return self.config.peft_type.upper() in ("LORA", "ADALORA")


def adapter_layout(config: AdapterConfig, shapes: dict[str, tuple[int, ...]]) -> AdapterLayout:
    """The layout of an adapter whose file holds `shapes` (key in the file -> shape)."""
    strip = bool(shapes) and all(k.startswith(PEFT_PREFIX) for k in shapes)
    renamed = {k: k[len(PEFT_PREFIX) :] if strip else k for k in shapes}
    layout = AdapterLayout(config, renamed)
    saved_names = config.modules_to_save
    for key, shape in shapes.items():
        shown = renamed[key]
        layout.params += math.prod(shape)
        path, part = _lora_part(shown)
        if part is None or not layout.is_lora:
            owner = shown.rpartition(".")[0]
            if owner and matches(owner, saved_names):
                layout.saved.setdefault(owner, []).append(shown)
            continue
        module = layout.modules.setdefault(path, LoraModule(path))
        module.keys.append(shown)
        role = LORA_PARTS[part]
        if role == "m":
            module.magnitude = shape
        elif shown.endswith(".bias"):
            continue  # lora_bias: B's bias, counted but not part of B @ A
        elif role == "A":
            module.a, module.a_key = shape, shown
        else:
            module.b, module.b_key = shape, shown
        module.embedding = module.embedding or part.startswith("lora_embedding")
    for module in layout.modules.values():
        _check(module, layout)
        module.alpha = _alpha(module.path, config, layout)
        rank = module.rank or config.r
        module.scaling = module.alpha / (math.sqrt(rank) if config.use_rslora else rank)
    return layout


def _lora_part(key: str) -> tuple[str, str | None]:
    """`fc1.lora_A.weight` -> ('fc1', 'lora_A'); (key, None) for a key of no LoRA part."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in LORA_PARTS and len(parts) - i <= 2:
            return ".".join(parts[:i]), parts[i]
    return key, None


def _check(module: LoraModule, layout: AdapterLayout) -> None:
    if not module.a or not module.b:
        missing = "B" if module.a else "A"
        layout.problems.append(f"{module.path} has no LoRA {missing}")
    elif len(module.b) < 2 or module.b[1] != module.a[0]:
        layout.problems.append(f"{module.path}: A {module.a} and B {module.b} differ in rank")


def _alpha(path: str, config: AdapterConfig, layout: AdapterLayout) -> float:
    """`alpha_pattern`'s alpha for the module (the first plain name it ends with), else
    `lora_alpha`. A key in pattern syntax is not run, and said so."""
    for pattern, alpha in config.alpha_pattern.items():
        if not _PLAIN_NAME.match(pattern):
            if pattern not in layout.unevaluated:
                layout.unevaluated.append(pattern)
            continue
        if path == pattern or path.endswith("." + pattern):
            return alpha
    return config.lora_alpha


def matches(path: str, names: Iterable[str]) -> bool:
    """Whether PEFT's list of names picks `path`: the whole path, or its end after a dot."""
    return any(path == name or path.endswith("." + name) for name in names)


def unmatched(names: Iterable[str], paths: Iterable[str]) -> list[str]:
    """The names no path matches (only the ends as long as the longest name are kept: a model
    of a million modules is not copied a dozen times)."""
    names = list(names)
    if not names:
        return []
    longest = max(name.count(".") for name in names) + 1
    ends: set[str] = set()
    for path in paths:
        parts = path.split(".")
        ends.update(".".join(parts[-i:]) for i in range(1, min(longest, len(parts)) + 1))
    return [name for name in names if name not in ends]


# --- what the app shows -------------------------------------------------------------------------


def method_text(config: AdapterConfig) -> str:
    method = "LoRA" if config.peft_type.upper() == "LORA" else config.peft_type
    extras = [word for word, on in (("DoRA", config.use_dora), ("rsLoRA", config.use_rslora)) if on]
    return f"{method} ({', '.join(extras)})" if extras else method


def adapter_rows(layout: AdapterLayout, base: str, base_params: int | None = None) -> list[Row]:
    """The root's rows: the method and its settings, what it adapts, its size, its base."""
    config = layout.config
    rows: list[Row] = [("method", method_text(config))]
    if layout.is_lora:
        ranked = f" (rank_pattern: {len(config.rank_pattern)})" if config.rank_pattern else ""
        rows += [
            ("r", f"{config.r}{ranked}"),
            ("lora_alpha", f"{config.lora_alpha:g}"),
            ("scaling", scaling_text(layout)),
        ]
    if config.lora_dropout is not None:
        rows.append(("dropout", f"{config.lora_dropout:g}"))
    targets = config.target_modules
    if isinstance(targets, str):
        rows.append(
            ("target_modules", short(targets if targets == "all-linear" else f"re:{targets}"))
        )
    elif targets:
        rows.append(("target_modules", short(", ".join(targets))))
    if config.modules_to_save:
        rows.append(("modules_to_save", short(", ".join(config.modules_to_save))))
    if layout.is_lora:
        kinds = [m.kind for m in layout.modules.values()]
        counted = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds)))
        rows.append(("adapted modules", f"{len(kinds)}" + (f" ({counted})" if counted else "")))
    share = ""
    if base_params:
        share = f" ({layout.params / base_params:.2%} of the base's {base_params:,})"
    rows.append(("adapter parameters", f"{layout.params:,}{share}"))
    rows.append(("base model", short(base)))
    if config.task_type:
        rows.append(("task type", short(config.task_type)))
    return rows


def scaling_text(layout: AdapterLayout) -> str:
    config = layout.config
    scalings = sorted({m.scaling for m in layout.modules.values()})
    divisor = "√r" if config.use_rslora else "r"
    if len(scalings) > 1:
        return f"{scalings[0]:.4g} to {scalings[-1]:.4g} (alpha_pattern, rank_pattern)"
    rank = config.r
    scaling = (
        scalings[0]
        if scalings
        else config.lora_alpha / (math.sqrt(rank) if config.use_rslora else rank)
    )
    return f"{scaling:.4g} (lora_alpha / {divisor})"


def adapter_warnings(layout: AdapterLayout, paths: Iterable[str] | None) -> list[str]:
    """Names in the config that matched nothing (PEFT skips them silently), against the base's
    module `paths` when the base is known, else against what the adapter adapts; and what is
    wrong with the adapter's keys."""
    config = layout.config
    found = list(paths) if paths is not None else [*layout.modules, *layout.saved]
    where = "in the base" if paths is not None else "in the adapter"
    warnings = []
    if isinstance(config.target_modules, tuple):
        missing = unmatched(config.target_modules, found)
        if missing:
            names = ", ".join(repr(n) for n in missing)
            warnings.append(
                f"target_modules names that matched nothing {where}: {names} "
                "(PEFT skips them silently)"
            )
    missing = unmatched(config.modules_to_save, found)
    if missing:
        names = ", ".join(repr(n) for n in missing)
        warnings.append(f"modules_to_save names that matched nothing {where}: {names}")
    if layout.unevaluated:
        warnings.append(
            f"alpha_pattern keys in pattern syntax are not evaluated (lora_alpha is used): "
            f"{', '.join(repr(p) for p in layout.unevaluated[:3])}"
        )
    return [short(w, 400) for w in warnings + layout.problems[:5]]


def lora_note(module: LoraModule, config: AdapterConfig, norm: float | None) -> str:
    """The detail pane's lines for an adapted module."""
    divisor = f"√{module.rank}" if config.use_rslora else f"{module.rank}"
    lines = [
        f"rank {module.rank}, scaling {module.scaling:.4g} (alpha {module.alpha:g} / {divisor})",
        f"A {_shape(module.a)}, B {_shape(module.b)}",
    ]
    if norm is not None:
        lines.append(f"‖B·A‖·scaling {norm:.6g}")
    if module.magnitude is not None:
        lines.append(f"DoRA magnitude {_shape(module.magnitude)} (not in the norm)")
    return "\n".join(lines)


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def short(text: str, limit: int = VALUE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the base model -----------------------------------------------------------------------------


def cached_base(config: AdapterConfig) -> Path | None:
    """The local Hugging Face cache's snapshot of the base the config names, or None (a name
    that is not a repository's, such as a path, is not followed; nor is an adapter: bases do
    not chain)."""
    name = config.base_model
    if not name or name.startswith(("/", ".", "~")) or "\\" in name:
        return None
    try:
        snapshot = resolve_hub_snapshot(PREFIX + name)
    except SourceError:
        return None
    return None if adapter_weights(snapshot) is not None else snapshot


def base_text(config: AdapterConfig) -> str:
    """The base row of an adapter shown alone."""
    name = config.base_model
    if not name:
        return "not named in adapter_config.json; --arch BASE shows the adapter on it"
    return f"{name}, not in the local Hugging Face cache; --arch BASE shows the adapter on it"
