"""A recipe's fields checked against their schema before anything uses them.

A recipe is data from a file: each field has a type and a bound, an edit record has a known `op`
and only that op's arguments, and a source names a kind the recipe may rebuild. A problem is a
`SchemaError` of one line naming the field. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelbrowse.core.errors import ModelBrowseError

FORMAT = "modelbrowse-recipe"
VERSION = 1
# A recipe's file; the frozen list of a 7B model is a few megabytes.
MAX_BYTES = 64 << 20
MAX_EDITS = 100_000
MAX_FROZEN = 1_000_000
MAX_KWARGS = 256
MAX_NAME = 4096  # a path, a file name, a spec that names a source
MAX_CODE = 100_000  # a module spec (`nn.Sequential(...)`) or a keyword argument's literal
SEED_BOUND = 2**64
INDEX_BOUND = 10**9
MAX_TARGETS = 100_000  # LoRA's target_modules: names or full paths
SOURCE_KINDS = ("torchvision", "timm", "import", "checkpoint", "huggingface")

Check = Callable[[Any, str], Any]


class RecipeError(ModelBrowseError):
    """A recipe that cannot be read, does not match, or does not apply."""


class SchemaError(RecipeError):
    """A recipe field of the wrong type, size or name; the message names the field."""


def _text(limit: int) -> Check:
    def check(value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise SchemaError(f"'{field}' must be a string, not {_kind(value)}")
        if len(value) > limit:
            raise SchemaError(
                f"'{field}' is too long ({len(value):,} characters; at most {limit:,})"
            )
        return value

    return check


def _integer(low: int, high: int) -> Check:
    def check(value: Any, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"'{field}' must be an integer, not {_kind(value)}")
        if not low <= value < high:
            raise SchemaError(f"'{field}' is out of range (from {low} to {high - 1})")
        return value

    return check


def _boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"'{field}' must be true or false, not {_kind(value)}")
    return value


def _optional(check: Check) -> Check:
    def optional(value: Any, field: str) -> Any:
        return None if value is None else check(value, field)

    return optional


def _list_of(check: Check, limit: int) -> Check:
    def checked(value: Any, field: str) -> list[Any]:
        if not isinstance(value, list):
            raise SchemaError(f"'{field}' must be a list, not {_kind(value)}")
        if len(value) > limit:
            raise SchemaError(f"'{field}' has too many entries ({len(value):,}; at most {limit:,})")
        return [check(item, f"{field}[{number}]") for number, item in enumerate(value)]

    return checked


def _fraction(value: Any, field: str) -> float:
    """A number from 0 up to (not including) 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"'{field}' must be a number, not {_kind(value)}")
    if not 0 <= value < 1:
        raise SchemaError(f"'{field}' is out of range (from 0 up to 1)")
    return float(value)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


NAME = _text(MAX_NAME)
CODE = _text(MAX_CODE)
SEED = _integer(-SEED_BOUND, SEED_BOUND)
COUNT = _integer(0, 2**63)

CAST_DTYPES = ("bfloat16", "float16", "float32")


def _cast_dtype(value: Any, field: str) -> str:
    if value not in CAST_DTYPES:
        shown = _quote(value) if isinstance(value, str) else _kind(value)
        raise SchemaError(f"'{field}' is {shown}, not one of {', '.join(CAST_DTYPES)}")
    return str(value)


# Each op's arguments: name -> (check, required). `path` is required everywhere.
EDIT_FIELDS: dict[str, dict[str, tuple[Check, bool]]] = {
    "set_trainable": {"trainable": (_boolean, True), "norm_stats": (_boolean, False)},
    "reinit": {"scheme": (NAME, False), "seed": (SEED, False)},
    "replace": {"spec": (CODE, True), "seed": (SEED, False)},
    "delete": {},
    "insert": {
        "index": (_integer(-INDEX_BOUND, INDEX_BOUND), True),
        "spec": (CODE, True),
        "seed": (SEED, False),
    },
    "add_module": {"name": (NAME, True), "spec": (CODE, True), "seed": (SEED, False)},
    "delete_keys": {},
    "cast": {
        "dtype": (_cast_dtype, True),
        "keep": (_list_of(NAME, MAX_FROZEN), False),
        "leave": (_list_of(NAME, MAX_FROZEN), False),
    },
    "add_lora": {
        "targets": (_list_of(NAME, MAX_TARGETS), True),
        "r": (_integer(1, 2**20), False),
        "lora_alpha": (_integer(1, 2**20), False),
        "lora_dropout": (_fraction, False),
        "modules_to_save": (_list_of(NAME, MAX_TARGETS), False),
        "seed": (SEED, False),
    },
    "transplant": {
        "source": (NAME, True),
        "sha256": (_text(64), True),
        "source_prefix": (NAME, False),
        "target_prefix": (NAME, False),
    },
}

CHECKPOINT_FIELDS: dict[str, tuple[Check, bool]] = {
    "key": (_optional(NAME), False),
    "keep_prefix": (_boolean, False),
    "strip_prefix": (_optional(NAME), False),
    "trust_pickle": (_boolean, False),  # read and checked, never honoured
    "keys_only": (_boolean, False),
}

KEPT_STEP_FIELDS: dict[str, tuple[Check, bool]] = {
    "records": (_integer(1, MAX_EDITS + 1), True),
    "selector": (NAME, False),
    "what": (NAME, False),
}

WEIGHTS_FIELDS: dict[str, tuple[Check, bool]] = {
    "file": (NAME, False),
    "format": (NAME, False),
    "sha256": (_text(64), False),
    "tensors": (COUNT, False),
    "params": (COUNT, False),
}


def _record(fields: dict[str, tuple[Check, bool]]) -> Check:
    """An object with only these keys, each checked; required ones present."""

    def check(value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise SchemaError(f"'{field}' must be an object, not {_kind(value)}")
        for key in value:
            if key not in fields:
                known = ", ".join(fields) or "none"
                raise SchemaError(f"'{field}' has an unknown field {_quote(key)} (known: {known})")
        checked: dict[str, Any] = {}
        for key, (check_one, required) in fields.items():
            if key in value:
                checked[key] = check_one(value[key], f"{field}.{key}")
            elif required:
                raise SchemaError(f"'{field}.{key}' is missing")
        return checked

    return check


KEPT = _record(
    {
        "reason": (NAME, False),
        "command": (CODE, False),
        "at": (NAME, False),
        "unsaved_edits": (_integer(0, MAX_EDITS + 1), False),
        "steps": (_list_of(_record(KEPT_STEP_FIELDS), MAX_EDITS), False),
        "announced": (_boolean, False),
    }
)


def _kwargs(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise SchemaError(f"'{field}' must be an object, not {_kind(value)}")
    if len(value) > MAX_KWARGS:
        raise SchemaError(f"'{field}' has too many entries ({len(value):,}; at most {MAX_KWARGS})")
    for name, text in value.items():
        if not name.isidentifier():
            raise SchemaError(f"'{field}' has {_quote(name)}, which is not an argument name")
        CODE(text, f"{field}.{name}")
    return dict(value)


def _source(value: Any, field: str, *, inner: bool = False) -> dict[str, Any]:
    fields: dict[str, tuple[Check, bool]] = {
        "kind": (_one_of(SOURCE_KINDS), True),
        "spec": (NAME, True),
        "kwargs": (_kwargs, False),
        "weights": (_optional(NAME), False),
        "init_seed": (_optional(SEED), False),
        "reproducible": (_boolean, False),
    }
    if isinstance(value, dict) and value.get("kind") == "checkpoint" and not inner:
        fields |= {
            "format": (NAME, False),
            "whole_model": (_boolean, False),
            "arch": (_optional(lambda v, f: _source(v, f, inner=True)), False),
            "checkpoint": (_record(CHECKPOINT_FIELDS), False),
        }
    record: dict[str, Any] = _record(fields)(value, field)
    if inner and record["kind"] == "checkpoint":
        raise SchemaError(f"'{field}.kind' cannot be a checkpoint inside a checkpoint")
    record.setdefault("kwargs", {})
    return record


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: Any, field: str) -> str:
        if value not in choices:
            shown = _quote(value) if isinstance(value, str) else _kind(value)
            raise SchemaError(f"'{field}' is {shown}, not one of {', '.join(choices)}")
        return str(value)

    return check


def _edit(value: Any, field: str, number: int) -> dict[str, Any]:
    try:
        if not isinstance(value, dict):
            raise SchemaError(f"'{field}' must be an object, not {_kind(value)}")
        op = value.get("op")
        if op not in EDIT_FIELDS:
            shown = _quote(op) if isinstance(op, str) else _kind(op)
            raise SchemaError(f"'{field}.op' is {shown}, not one of {', '.join(EDIT_FIELDS)}")
        fields = {"op": (NAME, True), "path": (NAME, True), **EDIT_FIELDS[op]}
        checked: dict[str, Any] = _record(fields)(value, field)
        return checked
    except SchemaError as exc:
        raise SchemaError(f"step {number} of the recipe is malformed: {exc}") from None


def _edits(value: Any, field: str) -> list[dict[str, Any]]:
    records = _list_of(lambda v, f: v, MAX_EDITS)(value, field)
    return [_edit(r, f"{field}[{n}]", n + 1) for n, r in enumerate(records)]


def validate_recipe(data: Any, where: str) -> dict[str, Any]:
    """The recipe read from `where` as checked plain data; fields it does not know are left
    out. A problem is one line starting with `where`."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SchemaError(f"{where} is not a modelbrowse recipe")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        shown = version if isinstance(version, int) and abs(version) < 10**6 else "?"
        raise SchemaError(
            f"{where} has recipe version {shown}; this modelbrowse reads up to {VERSION}"
        )
    try:
        return _fields(data, version)
    except SchemaError as exc:
        raise SchemaError(f"{where}: {exc}") from None


def _fields(data: dict[str, Any], version: int) -> dict[str, Any]:
    checks: dict[str, tuple[Check, bool]] = {
        "source": (_source, True),
        "edits": (_edits, True),
        "frozen": (_list_of(NAME, MAX_FROZEN), True),
        "created": (NAME, False),
        "modelbrowse": (NAME, False),
        "torch": (NAME, False),
        "weights": (_record(WEIGHTS_FIELDS), False),
        "kept": (KEPT, False),
    }
    recipe: dict[str, Any] = {"format": FORMAT, "version": version}
    for key, (check, required) in checks.items():
        if key in data:
            recipe[key] = check(data[key], key)
        elif required:
            raise SchemaError(f"'{key}' is missing")
    return recipe


def _quote(text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return repr(shown)
