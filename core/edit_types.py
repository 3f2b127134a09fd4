"""Every edit type by the `op` name a recipe records."""

from __future__ import annotations

from modelbrowse.core.edits import AddModule, Delete, Edit, Insert, Reinit, Replace, SetTrainable
from modelbrowse.core.weight_edits import DeleteKeys

EDIT_TYPES: dict[str, type[Edit]] = {
    cls.op: cls for cls in (SetTrainable, Reinit, Replace, Delete, Insert, AddModule, DeleteKeys)
}
