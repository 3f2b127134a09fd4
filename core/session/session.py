"""A browsing session without its screen: the source, its node index, the edits, the load's
state, the shape check's result, a comparison and a selection.

The App composes widgets and maps keys to calls on one `Session`; nothing here imports Textual,
and torch only inside the methods that need it (the app paints before torch loads). A step that
takes long has a worker's part that only reads and returns (`load`, `build_real`,
`check_shapes`, `save`) and a part that takes the result on the UI thread (`opened`,
`materialised`, `shape_checked`, `saved`): the session changes on one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelbrowse.core.saving.names import default_folder_name, default_save_name, is_folder_target
from modelbrowse.core.session.keeping import keep_unsaved
from modelbrowse.core.session.opening import (
    EAGER_MATERIALISE_LIMIT,
    STATE_LABELS,
    LoadState,
    Opened,
    Request,
    open_model,
)
from modelbrowse.core.session.probing import Probe
from modelbrowse.core.session.selecting import SelectionState
from modelbrowse.core.units import human_count

if TYPE_CHECKING:
    from modelbrowse.core.arguments import ExampleInput
    from modelbrowse.core.diff import DiffView
    from modelbrowse.core.edits.base import Edit
    from modelbrowse.core.edits.history import EditHistory
    from modelbrowse.core.edits.shape_check import ShapeCheck
    from modelbrowse.core.index import NodeIndex
    from modelbrowse.core.saving.hf_folder import FolderReport
    from modelbrowse.core.saving.weights import SaveReport
    from modelbrowse.core.selectors import Selection
    from modelbrowse.core.session.plans import Build
    from modelbrowse.core.sources.base import Source
    from modelbrowse.core.structure_index import StructureIndex

Action = Callable[[], object]  # what it returns is not used


@dataclass(frozen=True)
class ApplyResult:
    """An edit applied, undone or redone: the line that says so, and what it did to tied or
    shared objects (`note`, asked about before it was applied)."""

    edit: Edit
    message: str
    note: str = ""


class Session:
    """One model opened, browsed and edited; see the module's docstring."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.load_state = LoadState.READING
        self.source: Source | None = None
        self.index: NodeIndex | None = None  # a preview's StructureIndex while PREVIEW
        self.history: EditHistory | None = None  # once tensors are real
        self.init_seed: int | None = request.seed
        self.shape: ShapeCheck | None = None
        self.diff_view: DiffView | None = None
        self.warning = ""  # the first thing the header warns about
        self.selection = SelectionState()
        self.probe = Probe()  # the last probe run, stale after any change
        self.building: Build | None = None
        self.saving = False
        self.last_save_path: str | None = None
        self.recipe_edits: list[Edit] = []  # `--recipe`: applied once tensors are real
        self._waiting: list[Action] = []  # what waits for real tensors
        self._notes: dict[int, tuple[Edit, str]] = {}  # id(edit) -> (edit, its tie note)
        self._materialised = False  # real tensors made after the structure was shown

    # --- the load ------------------------------------------------------------------------------

    @property
    def previewing(self) -> bool:
        """The keys' tree read before torch is shown: no values, no edits."""
        return self.load_state is LoadState.PREVIEW

    @property
    def materialising(self) -> bool:
        return self.load_state is LoadState.INITIALISING

    def load(self, loading: Callable[[str], None]) -> Opened:
        """The worker's part of the open (`open_model`); `opened` takes what it returns."""
        return open_model(self.request, self.init_seed, loading)

    def show_preview(self, index: StructureIndex) -> bool:
        """Show the keys' tree while the full open runs; False when that was quicker."""
        if self.index is not None:
            return False
        self.index = index  # type: ignore[assignment]  # the read side of a NodeIndex
        self.load_state = LoadState.PREVIEW
        return True

    def opened(self, opened: Opened) -> StructureIndex | None:
        """Take what the load worker read; the preview's index it replaces, if one was shown.
        The state says what follows: READY starts the history, INITIALISING a worker."""
        shown = self.index if self.previewing else None
        self.source, self.index, self.init_seed = opened.source, opened.index, opened.seed
        self.recipe_edits = opened.recipe_edits
        params = opened.index.totals().params
        if opened.view is not None:
            self.diff_view = opened.view
            self.load_state = LoadState.COMPARISON
        elif not opened.is_meta:
            self.load_state = LoadState.READY
        elif self.request.meta:
            self.load_state = LoadState.META
        elif params <= EAGER_MATERIALISE_LIMIT:
            self.load_state = LoadState.INITIALISING
        else:
            self.load_state = LoadState.STRUCTURE
        if opened.view is None and opened.source.warnings:
            self.warning = opened.source.warnings[0]
        return shown  # type: ignore[return-value]

    def take_recipe_edits(self) -> list[Edit]:
        """`--recipe`'s edits, once, to apply now that tensors are real."""
        edits, self.recipe_edits = self.recipe_edits, []
        return edits

    def file_changed(self) -> None:
        """The file was changed since it was saved with the recipe beside it."""
        self.warning = "the file differs from its recipe"

    def failed(self) -> None:
        self.load_state = LoadState.FAILED

    def begin_materialising(self) -> bool:
        """Real values are needed: True when a worker should make them now."""
        if self.request.meta or self.index is None or not self.index.is_meta:
            return False
        if self.load_state is not LoadState.STRUCTURE:
            return False  # already under way, or a preview (values follow anyway)
        self.load_state = LoadState.INITIALISING
        return True

    def build_real(self) -> NodeIndex:
        """The model with real tensors (same paths), in a worker."""
        assert self.source is not None
        from modelbrowse.core.index import NodeIndex

        return NodeIndex(self.source.build_real(self.init_seed))

    def materialised(self, index: NodeIndex) -> None:
        self.index = index
        self.load_state = LoadState.READY
        self._materialised = True

    def start_history(self) -> list[Action]:
        """Edits act on real tensors from now on; what waited for them, to run now."""
        from modelbrowse.core.edits.history import EditHistory

        assert self.index is not None
        self.history = EditHistory(self.index.model)
        waiting, self._waiting = self._waiting, []
        return waiting

    def defer(self, action: Action) -> None:
        """Run `action` once tensors are real (`start_history` hands it back)."""
        self._waiting.append(action)

    @property
    def state_label(self) -> str:
        """The state as the header says it, "" when there is nothing to say."""
        state = self.load_state
        if state is LoadState.READY:
            if self._materialised:
                return "random init" if self.source and self.source.kind == "torchvision" else ""
            return "pretrained" if self.source and self.source.weights else ""
        if state is LoadState.STRUCTURE:
            params = self.index.totals().params if self.index is not None else 0
            return f"structure only: values load when needed ({human_count(params)} params)"
        return STATE_LABELS[state]

    # --- what may change ---------------------------------------------------------------------

    def meta_refusal(self) -> str | None:
        """With --meta, why nothing can be edited or written; None when there are values."""
        if self.request.meta and self.index is not None and self.index.is_meta:
            return "--meta: the model has no values to edit or write (open it without --meta)"
        return None

    def edit_refusal(self) -> str | None:
        """Why nothing may change at all (loading, --meta, a TorchScript model, a build under
        way), or None."""
        if self.previewing:
            return "the model is still loading"
        refusal = self.meta_refusal() or (self.source.edit_refusal if self.source else None)
        return refusal or self.build_refusal()

    def build_refusal(self) -> str | None:
        """Why no other edit may start now (one is being built), or None."""
        if self.building is None:
            return None
        return f"{self.building.label} is being built: wait, or escape cancels it"

    def weights_only_refusal(self, what: str) -> str | None:
        """A checkpoint without an architecture: only tensor re-inits and key deletes apply."""
        if self.source is None or not self.source.weights_only:
            return None
        return (
            f"{what} needs the architecture: open the checkpoint with --arch NAME "
            "(without it: i re-initialises a tensor, d deletes keys)"
        )

    # --- edits ---------------------------------------------------------------------------------

    def tie_question(self, edit: Edit) -> str:
        """What `edit` would do to shared objects, to ask before applying it ("" if nothing)."""
        from modelbrowse.core.session.ties import note_aliases, tie_question

        assert self.index is not None
        note_aliases(self.index, edit)
        return tie_question(self.index, edit)

    def begin_build(self, edit: Edit) -> Build | None:
        """The modules `edit` must build before it applies (in a worker), or None."""
        from modelbrowse.core.session.plans import build_for

        assert self.history is not None
        self.building = build_for(edit, self.history.model)
        return self.building

    def end_build(self, build: Build) -> bool:
        """The build is over; False when it was cancelled (its modules are dropped)."""
        if self.building is not build:
            return False
        self.building = None
        return True

    def cancel_build(self) -> bool:
        """Drop the build in progress; False when there is none."""
        build, self.building = self.building, None
        if build is None:
            return False
        build.cancelled.set()  # the worker stops at its next module or tensor
        return True

    def apply(self, edit: Edit, note: str = "") -> ApplyResult:
        """Apply `edit` through the history and bring the index up to date. `note` is the tie
        question the user said yes to. Raises `ModelBrowseError` (nothing changed)."""
        from modelbrowse.core.edits.batch import Batch
        from modelbrowse.core.session.ties import note_aliases

        assert self.history is not None and self.index is not None
        note_aliases(self.index, edit)
        whole = isinstance(edit, Batch) or edit.path not in self.index  # a selector's edit
        also = [] if whole else self.index.aliases_outside(edit.path)
        self.history.apply(edit)
        self.probe.mark_stale()
        if note:
            self._notes[id(edit)] = (edit, note)
        edit.update_index(self.index)
        message = self.describe(edit)
        if also and not note:
            message += f" · also changes: {', '.join(also)}"
        return ApplyResult(edit, message, note)

    def undo(self) -> ApplyResult | None:
        return self._step(undo=True)

    def redo(self) -> ApplyResult | None:
        return self._step(undo=False)

    def _step(self, undo: bool) -> ApplyResult | None:
        if self.history is None:
            return None
        edit = self.history.undo() if undo else self.history.redo()
        if edit is None:
            return None
        assert self.index is not None
        edit.update_index(self.index)
        self.probe.mark_stale()
        words = "undid" if undo else "redid"
        return ApplyResult(edit, f"{words}: {self.describe(edit)}", self.note(edit))

    def note(self, edit: Edit) -> str:
        kept = self._notes.get(id(edit))
        return kept[1] if kept is not None and kept[0] is edit else ""

    def describe(self, edit: Edit) -> str:
        """The edit in words, with what it did to tied or shared objects when it did any."""
        note = self.note(edit)
        return f"{edit.describe()} ({note})" if note else edit.describe()

    def log(self) -> tuple[list[tuple[str, list[str]]], str]:
        """The edits so far, each in words and as code, and the snippet that repeats them."""
        if self.history is None:
            return [], ""
        return [(self.describe(e), e.as_code()) for e in self.history.done], self.history.code()

    @property
    def unsaved(self) -> int:
        return self.history.unsaved if self.history is not None else 0

    # --- the shape check -----------------------------------------------------------------------

    def example_input(self) -> ExampleInput | None:
        """`--input-shape` and `--input-dtype`, else the source's default input, else None."""
        from modelbrowse.core.arguments import example_input

        default = self.source.default_input if self.source else None
        return example_input(self.request.input_shape, self.request.input_dtype, default)

    def check_shapes(self) -> ShapeCheck | None:
        """A forward pass on meta after a change (in a worker); None where none can run."""
        from modelbrowse.core.edits.shape_check import ShapeCheck, check_shapes
        from modelbrowse.core.example_inputs import input_dtypes, input_hint

        if self.history is None or (self.source is not None and self.source.weights_only):
            return None  # a checkpoint without an architecture cannot run
        model, example = self.history.model, self.example_input()
        if example is None:
            hint = input_hint(model)
            return ShapeCheck(
                None, f"shape check unavailable: no example input (--input-shape {hint})"
            )
        return check_shapes(model, example.shapes, input_dtypes(model, example))

    def shape_checked(self, result: ShapeCheck) -> None:
        self.shape = result

    @property
    def shape_failed(self) -> bool:
        return self.shape is not None and self.shape.ok is False

    @property
    def shape_text(self) -> str:
        """The check's result as the header says it, "" before the first check."""
        if self.shape is None:
            return ""
        return (
            f"shape check failed: {self.shape.message}" if self.shape_failed else self.shape.message
        )

    # --- the selection -------------------------------------------------------------------------

    def armed(self) -> Selection | None:
        """The selection the edit keys act on, or None (none, or a build under way)."""
        if self.building is not None:
            return None  # the cursor's own check then says why nothing starts
        return self.selection.current

    # --- a comparison --------------------------------------------------------------------------

    def comparison_note(self, path: str) -> str | None:
        """How `path` differs between the two sides of `--diff`, or None."""
        if self.diff_view is None or path not in self.diff_view.by_key:
            return None
        from modelbrowse.core.diff import CHANGE_WORDS

        change = self.diff_view.by_key[path]
        words = CHANGE_WORDS[change.change]
        return f"{words}: {change.detail}" if change.detail else words

    # --- saving --------------------------------------------------------------------------------

    def save_name(self) -> str:
        """Where `w` suggests writing: the last save, else a name after the source (a folder
        beside a Hugging Face or distributed checkpoint folder)."""
        assert self.source is not None
        if self.last_save_path is None and self.folder_refusal() is None:
            return default_folder_name(self.source.spec)
        return self.last_save_path or default_save_name(self.source.spec, self.source.kind)

    def folder_refusal(self) -> str | None:
        """Why `w` cannot write a Hugging Face folder, or None."""
        from modelbrowse.core.saving.hf_output import folder_refusal

        assert self.source is not None
        return folder_refusal(self.source)

    def protected_paths(self) -> set[Path]:
        """Files the model was opened from: overwriting them takes a second confirmation."""
        files = self.source.files if self.source is not None else []
        return {Path(f).resolve() for f in files}

    def begin_save(self) -> None:
        self.saving = True  # the changing keys wait until the file is written

    def save_failed(self) -> None:
        self.saving = False

    def save(
        self, path: Path, progress: Callable[[float], None], dtype: str | None = None
    ) -> SaveReport | FolderReport:
        """Write the weights and the recipe beside them (in a worker), floating tensors in
        `dtype` where one is given; raises `ModelBrowseError`, the edits kept."""
        from modelbrowse.core.edits.lora import lora_edit
        from modelbrowse.core.recipe import save_edited

        assert self.history is not None and self.source is not None
        edits = list(self.history.done)
        model, source, seed = self.history.model, self.source, self.init_seed
        lora = lora_edit(edits)
        if lora is not None:  # a PEFT adapter folder, the recipe in it
            from modelbrowse.core.recipe_lora import save_adapter_edited

            return save_adapter_edited(model, path, source, seed, edits, lora, progress=progress)
        if is_folder_target(path):
            from modelbrowse.core.saving.hf_output import save_model_folder

            shard = getattr(self.request, "max_shard_size", None)
            return save_model_folder(
                model,
                path,
                source,
                seed,
                edits,
                max_shard_size=shard,
                progress=progress,
                dtype=dtype,
            )
        return save_edited(model, path, source, seed, edits, progress=progress, dtype=dtype)

    def saved(self, report: SaveReport | FolderReport) -> None:
        self.saving = False
        assert self.history is not None
        self.history.mark_saved()
        self.last_save_path = str(report.path)

    def keep_unsaved(self, reason: str, command: str) -> str:
        """Write unsaved edits where the next session finds them (the app is stopped); what
        the last line says about them, "" when there were none."""
        if self.history is None or not self.history.unsaved or self.source is None:
            return ""
        return keep_unsaved(self.source, self.init_seed, self.history, reason, command)
