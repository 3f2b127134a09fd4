"""Every private part of Textual the app relies on, checked in one place.

pyproject.toml pins Textual to the releases the tests cover. Before widening that range, run
this file against the new release: a failure here names the private attribute that moved,
and where the app uses it, instead of a broken frame somewhere in the app tests.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from textual._styles_cache import StylesCache
from textual.app import App
from textual.message_pump import MessagePump
from textual.widgets import Tree
from textual.widgets._tree import _TreeLine


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


# (function, its parameters, where the app overrides or calls it)
SIGNATURES = [
    (
        StylesCache.render_line,
        [
            "self", "styles", "y", "size", "content_size", "padding", "base_background",
            "background", "render_content_line", "border_title", "border_subtitle", "opacity",
            "ansi_theme", "native_ansi",
        ],
        "widgets/quick_tree.py RowStylesCache.render_line keys rows by these, by position",
    ),
    (Tree._render_line, ["self", "y", "x1", "x2", "base_style"], "QuickTree.render_line"),
    (Tree._invalidate, ["self"], "QuickTree._invalidate"),
    (Tree._clear_line_cache, ["self"], "QuickTree.forget_rendering"),
    (
        MessagePump._dispatch_message,
        ["self", "message"],
        "widgets/guarded.py Guarded._dispatch_message",
    ),
    (App._handle_exception, ["self", "error"], "tui/failures.py FailureHandling"),
    (
        App._parse_action,
        ["self", "action", "default_namespace", "namespaces"],
        "tui/app.py ModelBrowseApp.run_action",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("function", "expected", "used_by"), SIGNATURES)
def test_private_methods_keep_their_signatures(
    function: Callable[..., Any], expected: list[str], used_by: str
) -> None:
    assert parameters(function) == expected, used_by


def test_tree_and_node_internals_exist() -> None:
    tree: Tree[None] = Tree("root")
    tree.root.add_leaf("leaf")
    # quick_tree.py: the row key, the line cache, the styles cache it replaces.
    assert isinstance(tree._tree_lines_cached, list | type(None))
    lines = tree._tree_lines
    assert isinstance(lines[0], _TreeLine)
    assert lines[0].path[-1] is tree.root and isinstance(lines[0].last, bool)
    assert isinstance(tree._styles_cache, StylesCache)
    node = tree.root
    # quick_tree.py sets `_label` and bumps `_updates` to repaint a line without a refresh.
    for name, kind in (
        ("_id", int),
        ("_updates", int),
        ("_hover_", bool),
        ("_selected_", bool),
        ("_label", object),
    ):
        assert isinstance(getattr(node, name), kind), name
    # Tree sets this in render_lines; QuickTree's row key reads it.
    assert "self._pseudo_class_state" in inspect.getsource(Tree.render_lines)
    # palette.py lists the tree's own bindings with their keys.
    assert isinstance(tree._bindings.key_to_bindings, dict)


def test_app_internals_exist() -> None:
    app: App[None] = App()
    assert app._exception is None  # failures.py declares it for the mixin
    assert hasattr(app, "_driver")  # signals.py reads the terminal settings Textual saved


def test_linux_driver_keeps_the_terminal_settings_it_replaced() -> None:
    """signals.py restores them from `app._driver.attrs_before` when a signal ends the app."""
    linux_driver = pytest.importorskip("textual.drivers.linux_driver")
    source = inspect.getsource(linux_driver.LinuxDriver.__init__)
    assert "self.attrs_before" in source


def test_textual_serve_methods_the_server_extends() -> None:
    """serving.py adds its guard in `_make_app` and caps sizes in `_process_messages`."""
    server = pytest.importorskip("textual_serve.server")
    assert parameters(server.Server._make_app) == ["self"]
    assert parameters(server.Server._process_messages) == ["self", "websocket", "app_service"]
