"""`BASE --merge ADAPTER --output OUT`: a LoRA adapter merged into its base without the app."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from modelbrowse.tui.console import write

# The flags --merge cannot go with.
LEFT_OUT = {
    "print_tree": "--print",
    "recipe": "--recipe",
    "diff": "--diff",
    "serve": "--serve",
    "meta": "--meta",
    "check": "--check",
    "arch": "--arch",
    "weights": "--weights",
    "key": "--key",
}


def usage_problem(args: argparse.Namespace) -> str | None:
    """Why these flags cannot go with --merge, or None."""
    if args.output is None:
        return "--merge needs --output OUT (.safetensors, .pt or a folder)"
    given = [
        flag for dest, flag in LEFT_OUT.items() if getattr(args, dest, None) not in (None, False)
    ]
    if given:
        return f"--merge writes SOURCE with the adapter merged; leave out {' and '.join(given)}"
    return None


def merge_command(
    args: argparse.Namespace, guarded: Callable[[argparse.Namespace, Callable[[], int]], int]
) -> int:
    def run() -> int:
        from pathlib import Path

        from modelbrowse.core.merge.run import merge_adapter

        report = merge_adapter(
            Path(args.source),
            Path(args.merge),
            Path(args.output),
            dtype=_dtype(args),
            max_shard_size=_max_shard_size(args),
        )
        write(report.summary() + "\n")
        return 0

    return guarded(args, run)


def _dtype(args: argparse.Namespace) -> object:
    """`--dtype`, where the command line has it."""
    return None


def _max_shard_size(args: argparse.Namespace) -> int | None:
    """`--max-shard-size`, where the command line has it."""
    return None
