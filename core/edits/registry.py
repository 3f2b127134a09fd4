"""Every edit type by the `op` name a recipe records."""

from __future__ import annotations

from modelbrowse.core.edits.base import Edit
from modelbrowse.core.edits.cast import Cast
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.lora import AddLora
from modelbrowse.core.edits.modules import AddModule, Delete, Insert, Replace
from modelbrowse.core.edits.reinit import Reinit
from modelbrowse.core.edits.transplant import Transplant
from modelbrowse.core.edits.weights import DeleteKeys

EDIT_TYPES: dict[str, type[Edit]] = {
    cls.op: cls for cls in (SetTrainable, Reinit, Replace, Delete, Insert, AddModule, DeleteKeys)
}
EDIT_TYPES[Cast.op] = Cast
EDIT_TYPES[AddLora.op] = AddLora
EDIT_TYPES[Transplant.op] = Transplant
