"""Every edit type by the `op` name a recipe records."""

from __future__ import annotations

from modelbrowse.core.edits import Edit, SetTrainable
from modelbrowse.core.module_edits import AddModule, Delete, Insert, Replace
from modelbrowse.core.reinit_edits import Reinit
from modelbrowse.core.weight_edits import DeleteKeys

EDIT_TYPES: dict[str, type[Edit]] = {
    cls.op: cls for cls in (SetTrainable, Reinit, Replace, Delete, Insert, AddModule, DeleteKeys)
}
