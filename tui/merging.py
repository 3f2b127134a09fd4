"""`BASE --merge ADAPTER --output OUT`: a LoRA adapter merged into its base without the app."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from modelbrowse.tui.console import write
from modelbrowse.tui.writing import shard_size

if TYPE_CHECKING:
    import torch

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
            max_shard_size=shard_size(args.max_shard_size),
        )
        write(report.summary() + "\n")
        return 0

    return guarded(args, run)


def _dtype(args: argparse.Namespace) -> torch.dtype | None:
    """`--dtype bf16|fp16|fp32` (torch's name once `main` has read it)."""
    import torch

    from modelbrowse.core.arguments import parse_dtype

    name = getattr(args, "dtype", None)
    return None if name is None else getattr(torch, parse_dtype(str(name)))  # type: ignore[no-any-return]
