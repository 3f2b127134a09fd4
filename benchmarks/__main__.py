"""`python -m benchmarks [--quick]`: run the figures, print the table, write the JSON.

A full run (neither `--quick` nor `--only`) also rewrites the table in docs/performance.md, between
its `<!-- table:start -->` and `<!-- table:end -->` lines; `--no-docs` leaves the file alone.

Exit status: 0 when every figure meets its target (informational ones aside), 1 when one misses
its target or fails to run, 2 when the environment lacks something (tmux, the console script).
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import importlib
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks import (
    DEFAULT_TIMEOUT_S,
    FIGURE_MODULES,
    FIGURES,
    Context,
    EnvironmentProblem,
    Figure,
    Result,
    progress,
)

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
DOCS_TABLE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
TABLE_START = "<!-- table:start -->"
TABLE_END = "<!-- table:end -->"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time modelbrowse against baselines measured in the same run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a subset with fewer runs (under a minute)"
    )
    parser.add_argument(
        "--runs", type=int, metavar="N", help="rounds per sample set (default: per set, 5 or more)"
    )
    parser.add_argument(
        "--only", action="append", metavar="FIGURE", help="run only this figure (repeatable)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds one run may take (default {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="PATH",
        help="where the JSON goes (default: results/latest.json for a full run, results/quick.json "
        "with --quick, results/only.json with --only, so a partial run keeps the full one's)",
    )
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="a full run leaves the table in docs/performance.md as it is",
    )
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be 1 or more")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    return args


def _read_cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _tmux_version() -> str:
    try:
        out = subprocess.run(["tmux", "-V"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return out.stdout.strip() or "unknown"


def machine_info() -> dict[str, Any]:
    """The machine and the versions that the figures depend on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": _read_cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "torch": _package_version("torch"),
        "torchvision": _package_version("torchvision"),
        "textual": _package_version("textual"),
        "modelbrowse": _package_version("modelbrowse"),
        "tmux": _tmux_version(),
    }


PACKAGES = ("modelbrowse.core", "modelbrowse.widgets", "modelbrowse.tui", "benchmarks")


def compile_bytecode() -> bool:
    """Compile the package's bytecode before anything is timed, as `pip install` does: an
    editable install under PYTHONDONTWRITEBYTECODE (set on some machines) compiles every module
    at every start, 50 ms or more before the first frame, which no installed copy pays.
    True when every folder compiled."""
    results = [
        compileall.compile_dir(folder, quiet=1)
        for name in PACKAGES
        for folder in importlib.import_module(name).__path__
    ]
    return all(results)


def _amount(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} s" if unit == "s" else f"{value:.1f} {unit}"


def format_table(results: Sequence[Result]) -> str:
    """The results as an aligned text table, then what each figure and baseline is."""
    header = ("figure", "value", "baseline", "ratio", "target", "pass/fail")
    rows = [
        (
            r.figure,
            _amount(r.value, r.unit),
            _amount(r.baseline, r.unit),
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target.describe() if r.target else "-",
            r.verdict,
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {1, 2, 3}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]
    out.append("")
    for r in results:
        runs = f"median of {r.runs}" if r.runs else "no runs"
        out.append(f"{r.figure}: {r.description} ({runs})")
        if r.baseline_name:
            out.append(f"    baseline: {r.baseline_name}")
        if r.error:
            out.append("    error: " + r.error.replace("\n", "\n    "))
    return "\n".join(out)


def format_machine(machine: dict[str, Any]) -> str:
    """One line about the machine and the versions."""
    return (
        f"machine: {machine['cpu']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable), python {machine['python']}, "
        f"torch {machine['torch']}, torchvision {machine['torchvision']}, "
        f"textual {machine['textual']}, {machine['tmux']}"
    )


def _markdown_amount(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.0f} {unit}" if value >= 10 else f"{value:.2f} {unit}"


def markdown_table(results: Sequence[Result], machine: dict[str, Any], duration_s: float) -> str:
    """The run as docs/performance.md shows it: the machine, a Markdown table, and a verdict."""
    cores = machine.get("usable_cores") or machine.get("cores")
    intro = (
        f"Latest full run ({duration_s / 60:.1f} minutes) on {machine['cpu']}, {cores} cores, "
        f"Python {machine['python']}, torch {machine['torch']}, "
        f"torchvision {machine['torchvision']}, textual {machine['textual']}:"
    )
    lines = [
        *textwrap.wrap(intro, 100, break_on_hyphens=False),
        "",
        "| figure | value | baseline | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = (
            f"`{r.figure}`",
            _markdown_amount(r.value, r.unit),
            _markdown_amount(r.baseline, r.unit),
            "–" if r.ratio is None else f"{r.ratio:.2f}",
            r.target.describe() if r.target else "–",
            r.verdict,
        )
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    missed = [f"`{r.figure}`" for r in results if r.counts_as_failure]
    lines.append("")
    lines.append(
        f"Missed its target or failed in this run: {', '.join(missed)}."
        if missed
        else "Every target held in this run."
    )
    return "\n".join(lines)


def replace_table(text: str, table: str) -> str:
    """`text` with what lies between the table markers replaced by `table`."""
    start = text.find(TABLE_START)
    end = text.find(TABLE_END, start + 1)
    if start < 0 or end < 0:
        raise ValueError(f"no {TABLE_START} ... {TABLE_END} lines")
    return f"{text[: start + len(TABLE_START)]}\n{table.strip()}\n{text[end:]}"


def write_docs_table(path: Path, table: str) -> None:
    """Rewrite the table between the markers of `path`; the rest of the file is kept."""
    path.write_text(replace_table(path.read_text(), table))


def select_figures(args: argparse.Namespace) -> list[Figure]:
    """The figures of this run: `--only`, or all (the quick ones with `--quick`)."""
    if args.only:
        known = {f.name for f in FIGURES}
        unknown = [name for name in args.only if name not in known]
        if unknown:
            raise SystemExit(
                f"unknown figure(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return [f for f in _in_module_order(FIGURES) if f.name in args.only]
    return [f for f in _in_module_order(FIGURES) if f.quick or not args.quick]


def _in_module_order(figures: Sequence[Figure]) -> list[Figure]:
    """As FIGURE_MODULES lists their modules (one module importing another's set registers
    figures out of that order), then as registered."""
    rank = {name: i for i, name in enumerate(FIGURE_MODULES)}
    return sorted(figures, key=lambda f: rank.get(f.func.__module__, len(rank)))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; returns the exit status."""
    args = parse_args(argv)
    modules = [importlib.import_module(name) for name in FIGURE_MODULES]
    if args.list:
        for f in _in_module_order(FIGURES):
            print(f"{f.name}{'' if f.quick else '  (full run only)'}")
        return 0
    try:
        for module in modules:
            check = getattr(module, "check_environment", None)
            if check is not None:
                check()
    except EnvironmentProblem as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2

    figures = select_figures(args)
    compiled = compile_bytecode()
    machine = machine_info()
    machine["bytecode"] = "compiled before the run" if compiled else "not all could be compiled"
    progress(format_machine(machine))
    load = machine["load_average_at_start"]
    if load and load[0] > 0.5 * (machine["usable_cores"] or 1):
        progress(
            f"warning: load average {load[0]:.2f} at start: other processes on this machine "
            "may skew the figures (ratios against same-run baselines soften, not remove, that)"
        )
    ctx = Context(quick=args.quick, timeout=args.timeout, runs_override=args.runs)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    try:
        results = [f.func(ctx) for f in figures]
    except KeyboardInterrupt:
        print("benchmarks: interrupted; no results written", file=sys.stderr)
        return 130
    duration = time.perf_counter() - t0

    print(format_machine(machine))
    load_text = "" if not load else f", load average {load[0]:.2f} at start"
    print(f"mode: {'quick' if args.quick else 'full'}, {duration:.1f} s in all{load_text}")
    print()
    print(format_table(results))

    report = {
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(duration, 3),
        "mode": "quick" if args.quick else "full",
        "timeout_s": args.timeout,
        "machine": machine,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "sample_set_seconds": ctx.set_seconds,
        "figures": [r.to_json() for r in results],
    }
    output = args.output or RESULTS.with_name(
        "only.json" if args.only else "quick.json" if args.quick else RESULTS.name
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {output}")
    if not (args.quick or args.only or args.no_docs):
        try:
            write_docs_table(DOCS_TABLE, markdown_table(results, machine, duration))
        except (OSError, ValueError) as exc:
            print(f"benchmarks: {DOCS_TABLE}: {exc}; the table there is unchanged", file=sys.stderr)
        else:
            print(f"written: {DOCS_TABLE}")
    return 1 if any(r.counts_as_failure for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader stopped early (`--list | head`): nothing to add
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
