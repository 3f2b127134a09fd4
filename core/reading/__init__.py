"""The reading layer: every byte from a file, folder, recipe or config is decoded here.

Nothing in this package imports torch or runs code a file names. Readers return plain records
(dataclasses, dicts, lists, numbers, strings) and check their limits before they allocate; every
problem is a `ReadError` whose message is one line fit for a user.
"""

from __future__ import annotations

from modelbrowse.core.reading.limits import Limits, ReadError

__all__ = ["Limits", "ReadError"]
