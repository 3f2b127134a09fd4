"""`SOURCE --check [--json]`: the health check without the app; 0 when clean, 1 when not."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from modelbrowse.tui.console import say, write

if TYPE_CHECKING:
    from modelbrowse.tui.options import AppOptions

# The flags --check cannot go with, and what they do instead.
LEFT_OUT = {
    "print_tree": "--print",
    "recipe": "--recipe",
    "output": "--output",
    "diff": "--diff",
    "serve": "--serve",
    "meta": "--meta",
}


def usage_problem(args: argparse.Namespace) -> str | None:
    """Why these flags cannot go with --check, or None."""
    given = [flag for dest, flag in LEFT_OUT.items() if getattr(args, dest) not in (None, False)]
    if not given:
        return None
    if given[0] == "--meta":
        return "--check reads every value and --meta builds none; leave out --meta"
    return f"--check prints its report and exits; leave out {' and '.join(given)}"


def check(
    args: argparse.Namespace,
    options: AppOptions,
    guarded: Callable[[argparse.Namespace, Callable[[], int]], int],
) -> int:
    def run() -> int:
        from modelbrowse.core.health import check_source
        from modelbrowse.core.health_text import report_json, report_notes, report_text

        seed = 0 if args.seed is None else args.seed
        report = check_source(options.resolve(), seed)
        if args.json:
            write(report_json(report) + "\n")
        else:
            for note in report_notes(report):
                say(f"note: {note}")
            write(report_text(report))
        return 1 if report.findings else 0

    return guarded(args, run)
