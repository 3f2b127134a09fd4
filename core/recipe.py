"""The recipe beside saved weights: where the model came from and the edits that made it.

A state_dict alone does not load into the original architecture once modules were replaced; the
recipe rebuilds the architecture (`load_edited`) or the whole edited model (`replay_recipe`).
The format is documented in docs/recipe.md ("The recipe").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbrowse.core.edits.base import Edit
from modelbrowse.core.edits.cast import write_cast
from modelbrowse.core.edits.freezing import SetTrainable
from modelbrowse.core.edits.registry import EDIT_TYPES
from modelbrowse.core.edits.reinit import Reinit
from modelbrowse.core.edits.specs import SpecError, parse_spec
from modelbrowse.core.edits.transplant import Transplant
from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.reading.limits import ReadError
from modelbrowse.core.reading.structured_text import parse_json, read_bounded
from modelbrowse.core.recipe_schema import (
    FORMAT,
    MAX_BYTES,
    VERSION,
    validate_recipe,
)
from modelbrowse.core.recipe_schema import (
    RecipeError as RecipeError,  # exported: callers catch it from here
)
from modelbrowse.core.recipe_sources import Supplied, rebuild_architecture
from modelbrowse.core.saving.hashing import file_sha256
from modelbrowse.core.saving.transaction import Transaction, write_atomic
from modelbrowse.core.saving.weights import SaveReport, format_for, read_weights, stage_weights
from modelbrowse.core.sources.base import Source
from modelbrowse.core.sources.weights_tree import tree_from_state_dict
from modelbrowse.core.tensor_bytes import check_files_hold
from modelbrowse.core.ties import restore_ties, tied_groups

RECIPE_FORMAT = FORMAT
RECIPE_VERSION = VERSION
RECIPE_SUFFIX = ".recipe.json"
ALIGNMENT = 64


def recipe_path_for(weights: str | os.PathLike[str]) -> Path:
    """`alexnet-edited.pt` -> `alexnet-edited.pt.recipe.json`."""
    weights = Path(weights)
    return weights.with_name(weights.name + RECIPE_SUFFIX)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelbrowse")
    except PackageNotFoundError:
        return "unknown"


def source_record(source: Source, init_seed: int | None) -> dict[str, Any]:
    """The source as the recipe stores it: enough to resolve and build it again."""
    return source.record(init_seed)


def frozen_parameters(model: nn.Module) -> list[str]:
    """Names (as in state_dict) of the parameters that do not require grad."""
    return [
        name
        for name, param in model.named_parameters(remove_duplicate=False)
        if not param.requires_grad
    ]


def build_recipe(
    source: Source,
    init_seed: int | None,
    edits: list[Edit],
    model: nn.Module,
    report: SaveReport | None,
) -> dict[str, Any]:
    """The recipe of an edited model; without a report (edits kept, not saved), no weights."""
    recipe: dict[str, Any] = {
        "format": RECIPE_FORMAT,
        "version": RECIPE_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "modelbrowse": _version(),
        "torch": torch.__version__,
        "source": source_record(source, init_seed),
        # A selection's edit is recorded as the edits it is made of: a replay needs no more.
        "edits": [record for edit in edits for record in edit.records()],
        "frozen": frozen_parameters(model),
    }
    if report is not None:
        recipe["weights"] = {
            "file": report.path.name,
            "format": report.format,
            "sha256": report.sha256,
            "tensors": report.tensors,
            "params": report.params,
        }
    return recipe


def recipe_text(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, indent=2) + "\n"


def write_recipe(recipe: dict[str, Any], path: Path) -> None:
    text = recipe_text(recipe)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    write_atomic(path, write)


def save_edited(
    model: nn.Module,
    path: str | os.PathLike[str],
    source: Source,
    init_seed: int | None,
    edits: list[Edit],
    *,
    progress: Callable[[float], None] | None = None,
    dtype: str | None = None,
) -> SaveReport:
    """Write the weights and the recipe beside them as one transaction: both are written,
    synced and (the weights) verified before either replaces anything.

    `dtype` (`bfloat16`, `float16`, `float32`) casts the floating tensors on the way, except
    those under a cast edit's path (it decided them); the recipe records it as a last cast."""
    if source.write_refusal is not None:
        raise RecipeError(source.write_refusal)
    path = Path(path).expanduser()
    format_for(path)
    recipe_path = recipe_path_for(path)
    start = time.perf_counter()
    dtypes = None
    if dtype is not None:
        cast = write_cast(dtype, [record for edit in edits for record in edit.records()])
        dtypes = cast.plan(model)
        edits = [*edits, cast] if dtypes else edits
    with Transaction(path, recipe_path) as save:
        report = stage_weights(save, model, path, progress=progress, dtypes=dtypes)
        text = recipe_text(build_recipe(source, init_seed, edits, model, report))

        def write(tmp: Path) -> None:
            tmp.write_text(text, encoding="utf-8")

        save.stage(recipe_path, write)
        save.commit()
    return dataclasses.replace(report, seconds=time.perf_counter() - start)


# --- reading ---------------------------------------------------------------------------------


def read_recipe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a recipe file (bounded) and check every field against the schema; every problem
    is one line naming the field."""
    path = Path(path)
    try:
        data = parse_json(read_bounded(path, "recipe", MAX_BYTES), str(path))
    except ReadError as exc:
        raise RecipeError(str(exc)) from None
    return validate_recipe(data, str(path))


def check_same_source(recipe: dict[str, Any], source: Source) -> None:
    """A recipe replays only onto the source it was written for, and one that can be edited."""
    if source.write_refusal is not None:
        raise RecipeError(source.write_refusal)
    mine = source_record(source, None)
    theirs = recipe["source"]
    for key in ("kind", "spec", "kwargs", "weights"):
        if key == "spec" and mine["kind"] == "torchvision":
            same = str(theirs.get("spec", "")).lower() == mine["spec"].lower()
        else:
            same = theirs.get(key) == mine[key]
        if not same:
            raise RecipeError(
                f"the recipe was written for {theirs.get('spec')!r}"
                f" ({key} {theirs.get(key)!r}), not {source.spec!r} ({key} {mine[key]!r})"
            )


def edits_of(recipe: dict[str, Any]) -> list[Edit]:
    """The recipe's edit records as Edit objects; a malformed record names its step."""
    edits: list[Edit] = []
    for number, record in enumerate(recipe["edits"], start=1):
        try:
            fields = dict(record)
            cls = EDIT_TYPES[fields.pop("op")]
            if "spec" in fields:
                parse_spec(fields["spec"])  # a spec from a file is checked before anything runs
            edits.append(cls(**fields))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"step {number} of the recipe is malformed: {record!r}") from exc
        except SpecError as exc:
            raise RecipeError(f"step {number} of the recipe is malformed: {exc}") from exc
    return edits


def replay(
    model: nn.Module, edits: list[Edit], *, structure_only: bool = False, start: int = 1
) -> None:
    """Apply the edits in order; the first that fails is one line naming its step (the first
    edit is step `start`)."""
    for number, edit in enumerate(edits, start=start):
        if structure_only and isinstance(edit, (Reinit, Transplant)):
            continue  # the weights come from the file
        if structure_only and isinstance(edit, SetTrainable) and not edit.norm_stats:
            continue  # the flags come from the recipe; running statistics kept need the edit
        try:
            edit.apply(model)
        except ModelBrowseError as exc:
            raise RecipeError(f"step {number} ({edit.describe()}): {exc}") from exc


def apply_frozen(model: nn.Module, frozen: list[str]) -> None:
    names = set(frozen)
    for name, param in model.named_parameters(remove_duplicate=False):
        param.requires_grad_(name not in names)


# --- the one line a training script needs ----------------------------------------------------


def load_edited(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    *,
    source: Supplied = None,
) -> nn.Module:
    """The edited model saved at `path`: architecture rebuilt from the recipe beside it, the
    weights loaded with `strict=True`, frozen parameters frozen.

        model = modelbrowse.core.load_edited("alexnet-edited.pt")
        model = modelbrowse.core.load_edited("net-edited.pt", source="mypkg.models:Net")

    A recipe rebuilds zoo models and checkpoints itself; a model from an import path is code,
    which runs only when the caller names it here (`source`: its import path, or the class or
    factory): the recipe's own word is not enough. With LoRA in the recipe, `path` may be the
    adapter folder `w` wrote, and the model returned is a `peft.PeftModel`.
    """
    from modelbrowse.core.edits.lora import lora_edit

    path = Path(path).expanduser()
    if path.is_dir():  # a PEFT adapter folder: its weights file has the recipe beside it
        from modelbrowse.core.recipe_lora import adapter_weights

        path = adapter_weights(path)
    recipe = read_recipe(recipe_path_for(path))
    problem = _hash_mismatch(path, recipe)
    if problem:
        raise RecipeError(problem)
    edits = edits_of(recipe)
    built = rebuild_architecture(recipe["source"], source)
    lora = lora_edit(edits)
    if lora is not None:  # the PeftModel, as get_peft_model makes it
        from modelbrowse.core.recipe_lora import load_lora_edited

        peft_model: nn.Module = load_lora_edited(path, recipe, edits, lora, built)
        return peft_model.to(map_location)
    state = read_weights(path)
    check_files_hold(state)  # mapped: a file truncated since its hash was taken is an error
    if built is None:  # a checkpoint edited without an architecture: its keys are the model
        tree = tree_from_state_dict(state)
        apply_frozen(tree, recipe["frozen"])
        return tree.to(map_location)
    model = _load_on_meta(built, edits, state)
    if model is None:
        model = built.build_real(recipe["source"].get("init_seed"))
        replay(model, edits, structure_only=True)
        _load_strict(model, state, assign=False)
    apply_frozen(model, recipe["frozen"])
    return model.to(map_location)


def check_recipe_beside(path: str | os.PathLike[str]) -> str | None:
    """With a recipe beside the weights at `path`: a message if the file is not the one it
    describes (changed or damaged since it was written: neither format checks on read)."""
    path = Path(path)
    recipe_file = recipe_path_for(path)
    if not path.is_file() or not recipe_file.is_file():
        return None
    try:
        recipe = read_recipe(recipe_file)
    except RecipeError as exc:
        return f"the recipe beside {path.name} cannot be used: {exc}"
    return _hash_mismatch(path, recipe)


def _hash_mismatch(path: Path, recipe: dict[str, Any]) -> str | None:
    expected = (recipe.get("weights") or {}).get("sha256")
    if not expected:
        return None
    actual = _sha256_of(path)
    if actual == expected:
        return None
    return (
        f"{path} is not the file its recipe describes: its sha256 is {actual}, the recipe "
        f"says {expected} (changed or damaged since it was written)"
    )


def _sha256_of(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise RecipeError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _load_on_meta(
    source: Source, edits: list[Edit], state: dict[str, torch.Tensor]
) -> nn.Module | None:
    """Build on meta and take the file's tensors as they are; None where that cannot work."""
    model, is_meta = source.build_structure()
    if not is_meta:
        return None
    replay(model, edits, structure_only=True)
    ties = tied_groups(model)
    # CPU kernels round differently on data that is not 64-byte aligned (safetensors' mmap can
    # leave it so); such tensors are copied, the others are taken as they are.
    state = {k: v.clone() if v.data_ptr() % ALIGNMENT else v for k, v in state.items()}
    _load_strict(model, state, assign=True)
    restore_ties(model, ties)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        return None  # non-persistent buffers have no values in the file: build for real
    return model


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], *, assign: bool) -> None:
    try:
        model.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) or first[0]
        raise RecipeError(f"the weights do not fit the rebuilt model: {detail}") from exc


# --- headless --------------------------------------------------------------------------------


def replay_recipe(
    recipe_file: str | os.PathLike[str],
    source: Source,
    output: str | os.PathLike[str],
    *,
    dtype: str | None = None,
) -> SaveReport:
    """Rebuild `source`, replay the recipe, write `output` (floating tensors in `dtype`, as
    `save_edited` says) and its recipe. Nothing is written when a step fails."""
    model, seed, edits = replayed(recipe_file, source)
    return save_edited(model, output, source, seed, edits, dtype=dtype)


def replayed(
    recipe_file: str | os.PathLike[str], source: Source
) -> tuple[nn.Module, int | None, list[Edit]]:
    """`source` rebuilt with the recipe's edits replayed: the model, its seed and the edits."""
    recipe = read_recipe(recipe_file)
    check_same_source(recipe, source)
    if not recipe["source"].get("reproducible", True):
        raise RecipeError("the recipe's source is a module instance: its weights cannot be rebuilt")
    edits = edits_of(recipe)
    seed = recipe["source"].get("init_seed")
    model = source.build_real(seed)
    replay(model, edits)
    apply_frozen(model, recipe["frozen"])
    return model, seed, edits
