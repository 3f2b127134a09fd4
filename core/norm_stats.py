"""BatchNorm layers whose running statistics stay as they are.

Freezing a BatchNorm's weight and bias still lets training update its running mean and
variance, and normalise with each batch's own statistics. Fine-tuning usually wants the layer
fixed: in eval mode. `model.train()` would undo a plain `.eval()`, so the layer gets a forward
pre-hook that puts it back in eval mode before every call: torch only, nothing in the state_dict
changes, and the recipe replays it.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from modelbrowse.core.paths import subtree_modules

HOOK_NAME = "keep_eval"


def keep_eval(module: nn.Module, args: Any) -> None:
    """Forward pre-hook: the layer normalises with its running statistics and leaves them be."""
    module.train(False)


def is_tracking_batch_norm(module: nn.Module) -> bool:
    """A BatchNorm layer (1d, 2d, 3d, lazy or synchronised) that keeps running statistics."""
    return isinstance(module, _BatchNorm) and module.track_running_stats


def tracking_batch_norms(module: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers at or under `module` that keep running statistics, each once."""
    return [m for m in subtree_modules(module) if is_tracking_batch_norm(m)]


def stats_frozen(module: nn.Module) -> bool:
    """True when the layer is kept in eval mode by `keep_eval` (ours or the recipe code's)."""
    return any(_is_keep_eval(hook) for hook in module._forward_pre_hooks.values())


def _is_keep_eval(hook: Any) -> bool:
    return getattr(hook, "__name__", "") == HOOK_NAME


def freeze_stats(module: nn.Module) -> None:
    if not stats_frozen(module):
        module.register_forward_pre_hook(keep_eval)
    module.train(False)


def release_stats(module: nn.Module, training: bool) -> None:
    hooks = module._forward_pre_hooks
    for key in [key for key, hook in hooks.items() if _is_keep_eval(hook)]:
        del hooks[key]
    module.train(training)


def freeze_code(ref: str) -> list[str]:
    """Statements that freeze the running statistics under `ref`, as `freeze_stats` does."""
    return [
        "def keep_eval(module, args):  # BatchNorm running statistics stay as they are",
        "    module.train(False)",
        f"for m in {ref}.modules():",
        "    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:",
        "        m.eval().register_forward_pre_hook(keep_eval)",
    ]


def release_code(ref: str) -> list[str]:
    """Statements that let the running statistics under `ref` update again."""
    return [
        f"for m in {ref}.modules():",
        "    for key, hook in list(m._forward_pre_hooks.items()):",
        "        if getattr(hook, '__name__', '') == 'keep_eval':",
        "            del m._forward_pre_hooks[key]",
        "            m.train(model.training)",
    ]
