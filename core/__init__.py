"""Pure-torch core of modelbrowse: sources, the node index, statistics, edits and saving.

Names are loaded lazily so that importing this package does not import torch; the CLI's
`--help` and the app's first paint depend on that. Type checkers read the same names from
the `TYPE_CHECKING` block below; tests/meta/test_contracts.py checks that both agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelbrowse.core.edits.freezing import SetTrainable
    from modelbrowse.core.edits.history import EditHistory
    from modelbrowse.core.edits.modules import AddModule, Delete, Insert, Replace
    from modelbrowse.core.edits.reinit import Reinit
    from modelbrowse.core.errors import ModelBrowseError, SourceError
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.nodes import Node, NodeKind
    from modelbrowse.core.recipe import load_edited, replay_recipe, save_edited
    from modelbrowse.core.recipe_schema import RecipeError
    from modelbrowse.core.saving.transaction import SaveError
    from modelbrowse.core.saving.weights import read_weights, save_weights
    from modelbrowse.core.sources.base import Source, resolve_source
    from modelbrowse.core.stats import TensorStats, compute_stats
    from modelbrowse.core.text_tree import render_tree_text

# Each name where it is defined, so that the lazy import and the block above name one module.
_EXPORTS = {
    "ModelBrowseError": "modelbrowse.core.errors",
    "SourceError": "modelbrowse.core.errors",
    "Source": "modelbrowse.core.sources.base",
    "resolve_source": "modelbrowse.core.sources.base",
    "NodeIndex": "modelbrowse.core.index",
    "Node": "modelbrowse.core.nodes",
    "NodeKind": "modelbrowse.core.nodes",
    "TensorStats": "modelbrowse.core.stats",
    "compute_stats": "modelbrowse.core.stats",
    "render_tree_text": "modelbrowse.core.text_tree",
    "EditHistory": "modelbrowse.core.edits.history",
    "SetTrainable": "modelbrowse.core.edits.freezing",
    "Reinit": "modelbrowse.core.edits.reinit",
    "Replace": "modelbrowse.core.edits.modules",
    "Delete": "modelbrowse.core.edits.modules",
    "Insert": "modelbrowse.core.edits.modules",
    "AddModule": "modelbrowse.core.edits.modules",
    "save_weights": "modelbrowse.core.saving.weights",
    "read_weights": "modelbrowse.core.saving.weights",
    "SaveError": "modelbrowse.core.saving.transaction",
    "save_edited": "modelbrowse.core.recipe",
    "load_edited": "modelbrowse.core.recipe",
    "replay_recipe": "modelbrowse.core.recipe",
    "RecipeError": "modelbrowse.core.recipe_schema",
}

# Spelled out rather than `sorted(_EXPORTS)` so that linters and type checkers can read it.
__all__ = [
    "AddModule",
    "Delete",
    "EditHistory",
    "Insert",
    "ModelBrowseError",
    "Node",
    "NodeIndex",
    "NodeKind",
    "RecipeError",
    "Reinit",
    "Replace",
    "SaveError",
    "SetTrainable",
    "Source",
    "SourceError",
    "TensorStats",
    "compute_stats",
    "load_edited",
    "read_weights",
    "render_tree_text",
    "replay_recipe",
    "resolve_source",
    "save_edited",
    "save_weights",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'modelbrowse.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later look-ups skip this function
    return value
