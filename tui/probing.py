"""`SOURCE --print --probe`: the probe's table without the app; 0 when no module produced NaN
or Inf, 1 when one did."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelbrowse.tui.console import write

if TYPE_CHECKING:
    from modelbrowse.tui.options import AppOptions

# The flags --probe cannot go with.
LEFT_OUT = {
    "check": "--check",
    "recipe": "--recipe",
    "output": "--output",
    "diff": "--diff",
    "serve": "--serve",
    "select": "--select",
    "detail": "--detail",
    "summary": "--summary",
}
# The flags that only mean something with --probe (or --backward).
PROBE_ONLY = {"input": "--input", "train": "--train", "backward": "--backward"}
# Of those, the ones the app's probe (p) reads too.
APP_TOO = {"input", "target"}


def probe_usage_problem(args: argparse.Namespace) -> str | None:
    """Why the probe's flags do not go together, or None."""
    if not args.probe:
        app = not (args.print_tree or args.check or args.output is not None)
        for dest, flag in PROBE_ONLY.items():
            if getattr(args, dest) not in (None, False) and not (app and dest in APP_TOO):
                return f"{flag} goes with --probe"
        if args.target is not None and not app:
            return "--target goes with --probe --backward"
        return None
    if not args.print_tree:
        return "--probe goes with --print (it prints the probe's table)"
    if args.meta:
        return "--probe runs the model and --meta builds no values; leave out --meta"
    given = [flag for dest, flag in LEFT_OUT.items() if getattr(args, dest) not in (None, False)]
    if given:
        return f"--probe prints its table and exits; leave out {' and '.join(given)}"
    if args.target is not None and not args.backward:
        return "--target is the loss's target: it goes with --backward"
    return None


def probe(
    args: argparse.Namespace,
    options: AppOptions,
    guarded: Callable[[argparse.Namespace, Callable[[], int]], int],
) -> int:
    def run() -> int:
        from modelbrowse.core.probe.of_source import probe_source
        from modelbrowse.core.probe.text import probe_table

        result = probe_source(
            options.resolve(),
            args.input_shape,
            args.input_dtype,
            input_file=None if args.input is None else Path(args.input),
            target_file=None if args.target is None else Path(args.target),
            train=args.train,
            backward=args.backward,
            seed=0 if args.seed is None else args.seed,
        )
        write(probe_table(result, depth=args.depth))
        return 1 if result.first_bad is not None else 0

    return guarded(args, run)
