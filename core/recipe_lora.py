"""A model with LoRA adapters, saved and loaded: the PEFT adapter folder and its recipe.

`w` on such a model writes what `PeftModel.save_pretrained` writes (`adapter_config.json`,
`adapter_model.safetensors`) plus the recipe, as one folder, so that
`PeftModel.from_pretrained(base, folder)` loads it; `load_edited(folder)` rebuilds the base from
the recipe and returns the `PeftModel` with the same trainable parameters.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbrowse.core.edits.base import Edit, seeded
from modelbrowse.core.edits.lora import AddLora
from modelbrowse.core.recipe_schema import RecipeError
from modelbrowse.core.saving.adapter_folder import ADAPTER_CONFIG, ADAPTER_WEIGHTS, write_folder
from modelbrowse.core.saving.hashing import file_sha256
from modelbrowse.core.saving.transaction import SaveError
from modelbrowse.core.saving.weights import SaveReport, read_weights
from modelbrowse.core.sources.base import Source

PREFIX = "base_model.model."  # where a PeftModel keeps the model it wraps
FORMAT = "peft-adapter"


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors under the names `PeftModel.save_pretrained` gives them."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, save_embedding_layers=False)
    return {PREFIX + k: v.detach().contiguous() for k, v in state.items()}


def save_adapter_edited(
    model: nn.Module,
    folder: Path,
    source: Source,
    init_seed: int | None,
    edits: list[Edit],
    edit: AddLora,
    *,
    progress: Callable[[float], None] | None = None,
) -> SaveReport:
    """Write the adapter folder and the recipe in it as one step."""
    from safetensors.torch import save_file

    from modelbrowse.core.recipe import build_recipe, recipe_path_for, recipe_text

    if source.write_refusal is not None:
        raise RecipeError(source.write_refusal)
    start = time.perf_counter()
    state = adapter_state(model)
    config = edit.config()
    config.inference_mode = True  # as save_pretrained writes it
    sha: list[str] = []

    def weights(path: Path) -> None:
        save_file(state, str(path), metadata={"format": "pt"})
        if progress is not None:
            progress(0.9)

    def settings(path: Path) -> None:
        config.save_pretrained(str(path.parent))

    def check(new: Path) -> None:
        back = read_weights(new / ADAPTER_WEIGHTS)
        if set(back) != set(state) or any(not torch.equal(back[k], state[k]) for k in state):
            raise SaveError(f"{folder}: the adapter does not read back as written")
        sha.append(file_sha256(new / ADAPTER_WEIGHTS))
        report = _report(folder, state, sha[0], 0.0)
        recipe = build_recipe(source, init_seed, edits, model, report)
        recipe["weights"]["file"] = ADAPTER_WEIGHTS
        text = recipe_text(recipe)
        (recipe_path_for(new / ADAPTER_WEIGHTS)).write_text(text, encoding="utf-8")

    write_folder(folder, {ADAPTER_WEIGHTS: weights, ADAPTER_CONFIG: settings}, check)
    if progress is not None:
        progress(1.0)
    return _report(folder, state, sha[0], time.perf_counter() - start)


def _report(folder: Path, state: dict[str, torch.Tensor], sha: str, seconds: float) -> SaveReport:
    params = sum(t.numel() for t in state.values())
    nbytes = sum(t.numel() * t.element_size() for t in state.values())
    return SaveReport(folder, FORMAT, len(state), params, nbytes, seconds, sha)


def adapter_weights(path: Path) -> Path:
    """A folder names the adapter's weights file in it."""
    return path / ADAPTER_WEIGHTS if path.is_dir() else path


def wrap(model: nn.Module, edit: AddLora) -> Any:
    """`get_peft_model(model, config)` as the edit's code does it (same seed, same values)."""
    from peft import get_peft_model

    with seeded(edit.seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_peft_model(model, edit.config())


def rebuild_peft(
    model: nn.Module, edits: list[Edit], edit: AddLora, *, structure_only: bool
) -> Any:
    """Replay `edits` on `model` with the LoRA step done by `get_peft_model`; the PeftModel."""
    from modelbrowse.core.recipe import replay

    at = edits.index(edit)
    replay(model, edits[:at], structure_only=structure_only)
    peft_model = wrap(model, edit)
    replay(model, edits[at + 1 :], structure_only=structure_only, start=at + 2)
    return peft_model


def load_adapter(path: Path, peft_model: Any) -> None:
    """Load the adapter's tensors at `path` into `peft_model`; every one must fit."""
    from peft import set_peft_model_state_dict

    state = read_weights(path)
    try:
        result: Any = set_peft_model_state_dict(peft_model, state)
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()
        raise RecipeError(f"the adapter does not fit the rebuilt model: {first[0]}") from exc
    missing = [k for k in result.missing_keys if "lora_" in k or "modules_to_save" in k]
    if result.unexpected_keys or missing:
        odd = (result.unexpected_keys or missing)[0]
        raise RecipeError(f"the adapter does not fit the rebuilt model: {odd}")


def is_adapter_recipe(recipe: dict[str, Any]) -> bool:
    return (recipe.get("weights") or {}).get("format") == FORMAT


def load_lora_edited(
    path: Path, recipe: dict[str, Any], edits: list[Edit], edit: AddLora, built: Source | None
) -> Any:
    """`load_edited` for a recipe with an add_lora: the PeftModel, its base rebuilt by the
    recipe, its adapter (or, from `--recipe --output`, all its weights) from `path`."""
    from modelbrowse.core.recipe import _load_strict, apply_frozen
    from modelbrowse.core.tensor_bytes import check_files_hold

    if built is None:
        raise RecipeError("a recipe with LoRA needs the model's architecture to rebuild")
    model = built.build_real(recipe["source"].get("init_seed"))
    adapter_only = is_adapter_recipe(recipe)
    peft_model = rebuild_peft(model, edits, edit, structure_only=not adapter_only)
    if adapter_only:
        load_adapter(path, peft_model)
    else:
        state = read_weights(path)
        check_files_hold(state)
        _load_strict(model, state, assign=False)
    apply_frozen(model, recipe["frozen"])
    return peft_model
