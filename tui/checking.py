"""`SOURCE --check [--json] [--against REF]`: the health check without the app; 0 when clean,
1 when something is found, 2 on a usage error or a source that cannot be read."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from modelbrowse.tui.console import say, write

if TYPE_CHECKING:
    from modelbrowse.core.health import Against
    from modelbrowse.tui.options import AppOptions

# The flags --check cannot go with, and what they do instead.
LEFT_OUT = {
    "print_tree": "--print",
    "output": "--output",
    "diff": "--diff",
    "serve": "--serve",
    "meta": "--meta",
}


def usage_problem(args: argparse.Namespace) -> str | None:
    """Why these flags cannot go with --check, or None."""
    given = [flag for dest, flag in LEFT_OUT.items() if getattr(args, dest) not in (None, False)]
    if given and given[0] == "--meta":
        return "--check reads every value and --meta builds none; leave out --meta"
    if given:
        return f"--check prints its report and exits; leave out {' and '.join(given)}"
    if args.recipe is not None and args.against is None:
        return "with --check, --recipe says what --against compares; add --against REF"
    return None


def check(
    args: argparse.Namespace,
    options: AppOptions,
    guarded: Callable[[argparse.Namespace, Callable[[], int]], int],
) -> int:
    def run() -> int:
        from modelbrowse.core.health import check_source
        from modelbrowse.core.health_text import report_json, report_notes, report_text

        seed = 0 if args.seed is None else args.seed
        against = _against(args, options)  # a missing recipe is told before the long scan
        report = check_source(options.resolve(), seed, against=against)
        if args.json:
            write(report_json(report) + "\n")
        else:
            for note in report_notes(report):
                say(f"note: {note}")
            write(report_text(report))
        return 1 if report.findings else 0

    return guarded(args, run)


def _against(args: argparse.Namespace, options: AppOptions) -> Against | None:
    if args.against is None:
        return None
    from modelbrowse.core.health import Against
    from modelbrowse.core.health_against import frozen_of, recipe_for_check

    frozen = frozen_of(recipe_for_check(args.source, args.recipe))
    return Against(options.resolve(args.against), frozen, args.against)
