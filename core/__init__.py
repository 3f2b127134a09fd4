"""Pure-torch core of modelbrowse: sources, the node index, statistics and text output.

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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'modelbrowse.core' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
