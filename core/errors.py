"""Exceptions whose message is fit to show a user in one line."""

from __future__ import annotations


class ModelBrowseError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""


class SourceError(ModelBrowseError):
    """The model source could not be resolved, imported or built."""


class UsageError(ModelBrowseError):
    """A command-line value is malformed (a bad `--kw`, `--input-shape` or `--weights`)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
