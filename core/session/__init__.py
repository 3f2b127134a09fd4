"""A browsing session without its screen (`Session`): the App maps keys to its calls.

Importing this package imports no torch and no Textual; the app's first paint depends on it.
"""

from __future__ import annotations

from modelbrowse.core.session.opening import LoadState, Opened, Request, open_model, read_preview
from modelbrowse.core.session.plans import Build
from modelbrowse.core.session.session import ApplyResult, Session

__all__ = [
    "ApplyResult",
    "Build",
    "LoadState",
    "Opened",
    "Request",
    "Session",
    "open_model",
    "read_preview",
]
