"""Textual's Footer, composed again only when the keys it shows change."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.screen import Screen
from textual.widgets import Footer

Keys = tuple[tuple[str, str, str, bool, bool, str], ...]


class KeyFooter(Footer):
    """Textual's Footer removes and mounts all its keys on every bindings signal. A dialog
    opened over the screen empties it and closing the dialog composes the same keys again:
    30 to 50 ms for an unchanged line. Here the keys are hidden while a dialog is up (the palette
    key stays, as in Textual's) and shown again as they were; the footer is composed only when
    its keys change."""

    DEFAULT_CSS: ClassVar[str] = """
    KeyFooter.-keys-hidden > * {
        display: none;
    }
    KeyFooter.-keys-hidden > .-command-palette {
        display: block;
    }
    """

    _keys: Keys | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        will_compose = screen.app.app_focus and self.is_attached and screen is self.screen
        if not will_compose:
            super().bindings_changed(screen)
            return
        if screen is not screen.app.screen and self._keys is not None:  # a dialog is on top
            self.add_class("-keys-hidden")
            return
        self.remove_class("-keys-hidden")
        keys = _keys(screen)
        if keys == self._keys and self._bindings_ready:
            return
        self._keys = keys
        super().bindings_changed(screen)


def _keys(screen: Screen[Any]) -> Keys:
    """What the footer is composed from (the command palette's key is shown even when its
    binding is not, so every binding counts)."""
    return tuple(
        (binding.key, binding.action, binding.description, binding.show, enabled, tooltip)
        for _, binding, enabled, tooltip in screen.active_bindings.values()
    )
