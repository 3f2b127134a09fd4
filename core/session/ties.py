"""What an edit does to objects the model shares between paths, said before it is done."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.edits.batch import Batch
    from modelbrowse.core.index import NodeIndex


def parts(edit: Edit) -> list[Edit]:
    """The edits a batch is made of, or the edit itself."""
    from modelbrowse.core.edits.batch import Batch

    return list(edit.edits) if isinstance(edit, Batch) else [edit]


def note_aliases(index: NodeIndex, edit: Edit) -> None:
    """A replace puts its module back under every name it had: tell it those names."""
    from modelbrowse.core.edits.modules import Replace

    for part in parts(edit):
        if isinstance(part, Replace) and part.path in index and index.node(part.path).is_module:
            part.aliases = index.aliases(part.path)


def tie_question(index: NodeIndex, edit: Edit) -> str:
    """What the edit does to shared objects ("" when nothing), asked before it is applied."""
    from modelbrowse.core.edits.batch import Batch

    if isinstance(edit, Batch):
        return _batch_consequence(index, edit)
    if edit.path not in index:  # a selector (LoRA on a selection): nothing it replaces is tied
        return ""
    return consequence(edit, index.aliases_outside(edit.path))


def consequence(edit: Edit, also: list[str]) -> str:
    """A replace unties what it shares with the rest of the model; a re-init changes both
    sides of a tie."""
    from modelbrowse.core.edits.modules import Replace
    from modelbrowse.core.edits.reinit import Reinit

    where = edit.path or "the model"
    if isinstance(edit, Replace):
        replaced = edit.aliases or [edit.path]
        kept = [p for p in also if not any(p == a or p.startswith(a + ".") for a in replaced)]
        if kept:
            return f"{where} shares objects with {', '.join(kept)}: this unties them"
    elif isinstance(edit, Reinit) and also:
        return f"{where} is tied to {', '.join(also)}: re-initialising changes both"
    return ""


def _batch_consequence(index: NodeIndex, batch: Batch) -> str:
    """The first tie a selection's replace or re-init reaches, and how many more: asked once
    for the whole selection. Re-initialising both sides of a tie needs no question."""
    from modelbrowse.core.edits.modules import Replace
    from modelbrowse.core.edits.reinit import Reinit

    paths = [part.path for part in batch.edits]

    def selected(alias: str) -> bool:
        return any(alias == p or alias.startswith(p + ".") or not p for p in paths)

    found = []
    for part in batch.edits:
        if not isinstance(part, Replace | Reinit):
            continue
        also = index.aliases_outside(part.path)
        if isinstance(part, Reinit):
            also = [alias for alias in also if not selected(alias)]
        said = consequence(part, also)
        if said:
            found.append(said)
    if len(found) > 1:
        return f"{found[0]} (and {len(found) - 1} more like it)"
    return found[0] if found else ""
