"""Pure-torch core of modelbrowse: sources, the node index, statistics, edits and saving.

Names are loaded lazily so that importing this package does not import torch; the CLI's
`--help` and the app's first paint depend on that.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelBrowseError": "modelbrowse.core.errors",
    "SourceError": "modelbrowse.core.errors",
    "Source": "modelbrowse.core.sources",
    "resolve_source": "modelbrowse.core.sources",
    "NodeIndex": "modelbrowse.core.index",
    "Node": "modelbrowse.core.index",
    "NodeKind": "modelbrowse.core.index",
    "TensorStats": "modelbrowse.core.stats",
    "compute_stats": "modelbrowse.core.stats",
    "render_tree_text": "modelbrowse.core.text_tree",
    "EditHistory": "modelbrowse.core.history",
    "SetTrainable": "modelbrowse.core.edits",
    "Reinit": "modelbrowse.core.edits",
    "Replace": "modelbrowse.core.edits",
    "Delete": "modelbrowse.core.edits",
    "Insert": "modelbrowse.core.edits",
    "AddModule": "modelbrowse.core.edits",
    "save_weights": "modelbrowse.core.saving",
    "read_weights": "modelbrowse.core.saving",
    "SaveError": "modelbrowse.core.saving",
    "save_edited": "modelbrowse.core.recipe",
    "load_edited": "modelbrowse.core.recipe",
    "replay_recipe": "modelbrowse.core.recipe",
    "RecipeError": "modelbrowse.core.recipe",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'modelbrowse.core' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
