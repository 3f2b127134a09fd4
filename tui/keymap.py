"""The user's config file, `config.toml`: keys remapped in a `[keys]` table, and a theme.

    theme = "nord"

    [keys]
    freeze = "F"
    replace = "r,ctrl+e"

The file lives in the user's config folder (`$XDG_CONFIG_HOME/modelbrowse/config.toml`, by
default `~/.config/modelbrowse`). Names are Textual key names (`colon`, `ctrl+r`, `F`).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from modelbrowse.core.errors import ModelBrowseError, UsageError

if TYPE_CHECKING:
    from textual.binding import Binding

KEY_NAME = re.compile(r"^[A-Za-z0-9_+-]+$")


def config_path() -> Path:
    from platformdirs import user_config_path

    return user_config_path("modelbrowse") / "config.toml"


def remappable() -> list[tuple[str, Binding]]:
    """(action, binding) of every key the config may change, in the order help lists them."""
    from modelbrowse.tui.app import ModelBrowseApp
    from modelbrowse.widgets.module_tree import ModuleTree

    found: list[tuple[str, Binding]] = []
    for binding in [*ModelBrowseApp.BINDINGS, *ModuleTree.BINDINGS]:
        if not isinstance(binding, str | tuple) and binding.id is not None:
            found.append((binding.id, binding))
    return found


SETTINGS = ("theme", "keys")
CONFIG_BYTES = 16 << 10
"""A config file's size limit: a keymap of every action is about 2 KB, and TOML's dotted keys
take time that grows with the square of their depth (16 KB of them: about a second)."""


def _read(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    from modelbrowse.core.reading.limits import Limits
    from modelbrowse.core.reading.structured_text import read_toml

    try:  # bounded in size and depth: a hostile file is one line, never a traceback
        data: dict[str, object] = read_toml(path, "a config file", Limits(text_bytes=CONFIG_BYTES))
    except ModelBrowseError as exc:
        raise UsageError(str(exc)) from None
    for name in data:
        if name not in SETTINGS:
            close = difflib.get_close_matches(name, SETTINGS, n=1)
            hint = f"did you mean {close[0]}?" if close else "it knows theme and [keys]"
            raise UsageError(f"{path}: unknown setting {name!r} ({hint})")
    return data


@dataclass(frozen=True)
class Config:
    """The config file's settings, checked."""

    keymap: dict[str, str] = field(default_factory=dict)  # binding id -> "key,key"
    theme: str | None = None


def read_config(path: Path | None = None) -> Config:
    """The config file, read once and checked: a mistake is one `UsageError` line. No file:
    the defaults."""
    path = path or config_path()
    data = _read(path)
    return Config(_keymap(path, data.get("keys", {})), _theme(path, data.get("theme")))


def _theme(path: Path, theme: object) -> str | None:
    """`theme = "NAME"`, one of Textual's themes; None where the file names none."""
    if theme is None:
        return None
    from textual.theme import BUILTIN_THEMES

    if not isinstance(theme, str) or theme not in BUILTIN_THEMES:
        close = difflib.get_close_matches(str(theme), BUILTIN_THEMES, n=1)
        hint = f"did you mean {close[0]}?" if close else f"one of {', '.join(BUILTIN_THEMES)}"
        raise UsageError(f"{path}: unknown theme {theme!r} ({hint})")
    return theme


def _keymap(path: Path, keys: object) -> dict[str, str]:
    """The `[keys]` table, checked: {action: "key,key"}."""
    if not isinstance(keys, dict):
        raise UsageError(f'{path}: [keys] must be a table of action = "key,key"')
    if not keys:  # nothing to check, and the app's bindings cost the import of Textual
        return {}
    known = dict(remappable())
    for action, value in keys.items():
        if action not in known:
            close = difflib.get_close_matches(action, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"{path}: unknown action {action!r}{hint}; --print-config lists them")
        parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else []
        if not parts or not all(p and KEY_NAME.match(p) for p in parts):
            raise UsageError(
                f'{path}: keys for {action} must be Textual key names such as "F" or '
                f'"ctrl+e,colon", not {value!r}'
            )
    _check_conflicts(path, {a: b.key for a, b in known.items()} | keys)
    return dict(keys)


def _check_conflicts(path: Path, effective: dict[str, str]) -> None:
    owner: dict[str, str] = {}
    for action, keys in effective.items():
        for key in (k.strip() for k in keys.split(",")):
            if key in owner:
                raise UsageError(f"{path}: {key!r} is bound to both {owner[key]} and {action}")
            owner[key] = action


def describe_config(config: Config, path: Path | None = None) -> str:
    """`--print-config`: where the file is, the theme, then each action's keys and what it
    does."""
    from modelbrowse.tui.palette import APP_ACTIONS, TREE_ACTIONS

    path = path or config_path()
    state = "read" if path.is_file() else "not found: the defaults"
    lines = [f"config  {path} ({state})", ""]
    theme = config.theme
    lines += [f'theme = "{theme}"' if theme else '# theme = "nord"  # any of Textual\'s themes', ""]
    lines.append("[keys]")
    descriptions = APP_ACTIONS | TREE_ACTIONS
    for action, binding in remappable():
        keys = config.keymap.get(action, binding.key)
        title, what = descriptions.get(action, (binding.description, ""))
        changed = "  # changed" if action in config.keymap else ""
        lines.append(f'{action:<16} = "{keys}"  # {title}: {what}{changed}')
    return "\n".join(lines) + "\n"
