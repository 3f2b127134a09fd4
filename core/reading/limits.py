"""The limits every reader checks before it allocates, and the error it raises."""

from __future__ import annotations

from dataclasses import dataclass

from modelbrowse.core.errors import SourceError
from modelbrowse.core.units import printable


class ReadError(SourceError):
    """A file could not be read as what it claims to be; the message is one line.

    Messages quote names taken from files: control characters (a newline, an escape sequence)
    are escaped here, so no reader can forget to.
    """

    def __init__(self, message: str) -> None:
        super().__init__(printable(message, 4000))


@dataclass(frozen=True)
class Limits:
    """How much a reader may take from untrusted bytes. The defaults admit any real model file
    seen in the wild (a 1M-key state dict, a 100 MB safetensors header) and refuse the rest in
    bounded time and memory."""

    # A pickle (data.pkl, a legacy file, DCP .metadata) held in memory for decoding.
    pickle_bytes: int = 1 << 30
    # Objects a pickle may create (containers, strings, records); small ints are free.
    pickle_objects: int = 40_000_000
    # Nesting of containers as a reader walks them (dicts in dicts, lists of lists).
    depth: int = 200
    # Keys or entries a walk of nested containers may visit (a DAG of shared dicts could
    # otherwise expand to 2**60 paths from a few kilobytes).
    visits: int = 20_000_000
    # A safetensors (or similar) JSON header.
    header_bytes: int = 100_000_000
    # A small JSON or TOML file: config.json, an index, a recipe, the user's config.
    text_bytes: int = 64 << 20
    # Digits of an integer in a pickle or text (CPython parses longer ones in quadratic time).
    int_digits: int = 4300
    # Members of a zip archive.
    zip_members: int = 1_000_000
    # Dimensions of one tensor.
    tensor_rank: int = 64
    # An ONNX model's graph without its initializers' values, parsed in memory.
    onnx_graph_bytes: int = 1 << 30


DEFAULT_LIMITS = Limits()
