"""LoRA adapters as an edit, through the `peft` library (`pip install 'modelbrowse[peft]'`).

The adapters are injected in place (`peft.inject_adapter_in_model`), so every path the app
knows stays a path: `q_proj` is still `q_proj`, now a LoRA layer around the module it had (its
`base_layer`). The base is frozen as PEFT freezes it. Undo puts the original modules back and
every `requires_grad` flag as it was.

PEFT skips a target that matches nothing without a word, so the plan is made here, before
anything changes: the exact modules that get adapters and the chosen ones LoRA cannot adapt.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from modelbrowse.core.edits.base import Edit, EditError, new_seed, seeded
from modelbrowse.core.paths import set_module

if TYPE_CHECKING:
    from modelbrowse.core.index import NodeIndex

INSTALL_HINT = "pip install 'modelbrowse[peft]'"
ADAPTABLE = "Linear, Embedding, Conv1d/2d/3d, MultiheadAttention, transformers' Conv1D"
SHOWN = 8  # names listed in one line before "and N more"


def require_peft() -> None:
    """Raise one line naming the extra when peft is not installed."""
    try:
        import peft  # noqa: F401  # only whether it imports
    except ImportError:
        raise EditError(f"LoRA needs the peft package: {INSTALL_HINT}") from None


def has_adapter(module: nn.Module) -> bool:
    """A LoRA layer (or a modules_to_save copy) put there by peft."""
    return hasattr(module, "base_layer") or hasattr(module, "original_module")


def adaptable(module: nn.Module) -> bool:
    """Whether peft's LoRA can wrap `module` (what its dispatch accepts, by type)."""
    if has_adapter(module):
        return False
    kinds = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)
    if isinstance(module, kinds):
        return True
    cls = type(module)  # GPT-2's transposed linear layer
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")


def target_matches(path: str, targets: list[str]) -> bool:
    """PEFT's rule for a list of `target_modules`: the whole path or its last parts."""
    return any(path == t or path.endswith("." + t) for t in targets)


def _modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named modules outside existing adapters, as peft walks them (the root left out)."""
    found: list[tuple[str, nn.Module]] = []
    inside: list[str] = []
    for path, module in model.named_modules():
        if not path or any(path.startswith(p + ".") for p in inside):
            continue
        found.append((path, module))
        if has_adapter(module):
            inside.append(path)
    return found


@dataclass(frozen=True)
class LoraPlan:
    """What an AddLora would do: the modules that get adapters and the ones that cannot."""

    adapted: tuple[str, ...]
    unadaptable: tuple[tuple[str, str], ...]  # (path, class name)
    targets: tuple[str, ...]  # the `target_modules` that hit exactly `adapted`

    def adapted_text(self) -> str:
        return f"{len(self.adapted)} get adapters: {listed(list(self.adapted))}"

    def unadaptable_text(self) -> str:
        named = [f"{path} ({kind})" for path, kind in self.unadaptable]
        return f"{len(named)} cannot take LoRA: {listed(named)}" if named else ""


def listed(items: list[str]) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:SHOWN])
    return shown if len(items) <= SHOWN else f"{shown} and {len(items) - SHOWN} more"


def plan_for_paths(model: nn.Module, paths: list[str]) -> LoraPlan:
    """The plan for chosen modules: an adaptable one gets an adapter; a container gives its
    adaptable modules, its leaves LoRA cannot adapt listed as such (a ReLU, a norm)."""
    modules = _modules(model)
    kinds = dict(modules)
    adapted: set[str] = set()
    unadaptable: dict[str, str] = {}

    def take(path: str, module: nn.Module, container: bool) -> None:
        if adaptable(module):
            adapted.add(path)
        elif has_adapter(module) or not module._modules or not container:
            unadaptable.setdefault(path, type(module).__name__)

    for chosen in paths:
        module = kinds.get(chosen, model if not chosen else None)
        if module is None:
            continue
        if adaptable(module) or has_adapter(module) or not module._modules:
            take(chosen, module, container=False)
            continue
        for path, inner in modules:
            under = not chosen or path.startswith(chosen + ".")
            if under and not _ancestors(path, adapted):
                take(path, inner, container=True)
    ordered = [p for p, _ in modules if p in adapted]
    wrong = tuple((p, unadaptable[p]) for p, _ in modules if p in unadaptable)
    return LoraPlan(tuple(ordered), wrong, tuple(targets_for(modules, ordered)))


def _ancestors(path: str, among: set[str]) -> list[str]:
    """The paths of `among` that hold `path` (an attention's out_proj inside it)."""
    parts = path.split(".")
    return [a for a in (".".join(parts[:n]) for n in range(1, len(parts))) if a in among]


def targets_for(modules: list[tuple[str, nn.Module]], adapted: list[str]) -> list[str]:
    """`target_modules` for exactly these modules: the last parts of their names (`q_proj`)
    where those hit no other module, else the full paths."""
    names = sorted({p.rpartition(".")[2] for p in adapted})
    hits = [p for p, _ in modules if target_matches(p, names)]
    return names if hits == adapted else list(adapted)


def match_targets(model: nn.Module, targets: list[str]) -> LoraPlan:
    """The modules `target_modules` hits, as peft will match them, split by what LoRA adapts."""
    hits = [(p, m) for p, m in _modules(model) if target_matches(p, targets)]
    adapted = tuple(p for p, m in hits if adaptable(m))
    unadaptable = tuple((p, type(m).__name__) for p, m in hits if not adaptable(m))
    return LoraPlan(adapted, unadaptable, tuple(targets))


def parse_names(text: str) -> list[str]:
    """`q_proj, v_proj` -> ['q_proj', 'v_proj']: commas or spaces between names."""
    return [part for part in text.replace(",", " ").split() if part]


def settings_problem(r: int, lora_alpha: int, lora_dropout: float) -> str | None:
    if r < 1:
        return "r (the rank) is a whole number, 1 or more"
    if lora_alpha < 1:
        return "lora_alpha is a whole number, 1 or more"
    if not 0 <= lora_dropout < 1:
        return "lora_dropout is a number from 0 up to (not including) 1"
    return None


def targets_problem(model: nn.Module, targets: list[str], saved: list[str]) -> str | None:
    """Why these targets and modules_to_save cannot be applied, or None."""
    if not targets:
        return "no target modules: select modules (*) or name them, e.g. q_proj, v_proj"
    plan = match_targets(model, targets)
    if plan.unadaptable:
        return f"{plan.unadaptable_text()} (LoRA adapts {ADAPTABLE}); leave them out"
    if not plan.adapted:
        return f"target_modules {targets} match no module"
    for name in saved:
        hits = [p for p, _ in _modules(model) if target_matches(p, [name])]
        if not hits:
            return f"modules_to_save {name!r} matches no module"
        if any(p in plan.adapted for p in hits):
            return f"modules_to_save {name!r} also gets an adapter: name it in one list only"
    return None


@dataclass
class AddLora(Edit):
    """LoRA adapters on the modules `targets` hit (peft's `target_modules` rule)."""

    path: str  # what was chosen (a selector or a path), for the log
    targets: list[str]
    r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    modules_to_save: list[str] = field(default_factory=list)
    seed: int = field(default_factory=new_seed)
    op: ClassVar[str] = "add_lora"
    adapted: list[str] = field(default_factory=list, repr=False)
    saved: list[str] = field(default_factory=list, repr=False)  # modules_to_save's paths
    _originals: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    _wrappers: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    _before: list[tuple[nn.Parameter, bool]] = field(default_factory=list, repr=False)
    _after: list[tuple[nn.Parameter, bool]] = field(default_factory=list, repr=False)
    _peft_config: Any = field(default=None, repr=False)

    @property
    def changes_structure(self) -> bool:
        return True

    def config(self) -> Any:
        """The `peft.LoraConfig` this edit applies."""
        require_peft()
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=list(self.targets),
            modules_to_save=list(self.modules_to_save) or None,
        )

    def apply(self, model: nn.Module) -> None:
        if self._wrappers:  # a redo puts back the same adapters, with the values they had
            self._put(model, self._wrappers, self._after)
            model.peft_config = self._peft_config
            return
        require_peft()
        if hasattr(model, "peft_config") or any(has_adapter(m) for _, m in _modules(model)):
            raise EditError("the model already has PEFT adapters: undo them to add others")
        problem = settings_problem(self.r, self.lora_alpha, self.lora_dropout)
        problem = problem or targets_problem(model, self.targets, self.modules_to_save)
        if problem:
            raise EditError(problem)
        self.adapted = list(match_targets(model, self.targets).adapted)
        self.saved = [p for p, _ in _modules(model) if target_matches(p, self.modules_to_save)]
        self._originals = {p: model.get_submodule(p) for p in [*self.adapted, *self.saved]}
        self._before = [(p, p.requires_grad) for p in _parameters(model)]
        self._inject(model)
        self._wrappers = {p: model.get_submodule(p) for p in self._originals}
        self._after = [(p, p.requires_grad) for p in _parameters(model)]
        self._peft_config = model.peft_config

    def _inject(self, model: nn.Module) -> None:
        from peft import inject_adapter_in_model

        config = self.config()
        try:
            with seeded(self.seed), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # what it would warn about was planned above
                inject_adapter_in_model(config, model)
        except (ValueError, TypeError, RuntimeError) as exc:
            self._put(model, self._originals, self._before)
            if hasattr(model, "peft_config"):
                del model.peft_config
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EditError(f"peft could not add the adapters: {first}") from exc

    def undo(self, model: nn.Module) -> None:
        self._put(model, self._originals, self._before)
        if hasattr(model, "peft_config"):
            del model.peft_config

    @staticmethod
    def _put(
        model: nn.Module, modules: dict[str, nn.Module], flags: list[tuple[nn.Parameter, bool]]
    ) -> None:
        for path, module in modules.items():
            set_module(model, path, module)
        for param, flag in flags:
            param.requires_grad_(flag)

    def touched(self) -> list[str]:
        return [*self.adapted, *self.saved] or [self.path]

    def update_index(self, index: NodeIndex) -> None:
        index.refresh_structure(self.touched())
        index.refresh_values([""])  # the whole base was frozen (or thawed again)

    def describe(self) -> str:
        count = len(self.adapted) or len(self.targets)
        where = f" matching {self.path}" if self.path else ""
        modules = "module" if count == 1 else "modules"
        text = f"add LoRA (r={self.r}, alpha={self.lora_alpha}) to {count} {modules}{where}"
        return text + (
            f", training {', '.join(self.modules_to_save)}" if self.modules_to_save else ""
        )

    def as_code(self) -> list[str]:
        saved = f", modules_to_save={list(self.modules_to_save)!r}" if self.modules_to_save else ""
        return [
            "from peft import LoraConfig, get_peft_model",
            f"torch.manual_seed({self.seed})",
            f"config = LoraConfig(r={self.r}, lora_alpha={self.lora_alpha}, "
            f"lora_dropout={self.lora_dropout}, target_modules={list(self.targets)!r}{saved})",
            "model = get_peft_model(model, config)",
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "path": self.path,
            "targets": list(self.targets),
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "modules_to_save": list(self.modules_to_save),
            "seed": self.seed,
        }


def _parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(model.parameters())


def lora_edit(edits: list[Edit]) -> AddLora | None:
    """The AddLora among applied edits (a model holds one), or None."""
    return next((e for e in edits if isinstance(e, AddLora)), None)


def trainable_share(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, all parameters), each counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
