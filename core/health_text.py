"""`--check`'s report as text (one line per finding) and as JSON."""

from __future__ import annotations

import json

from modelbrowse.core.health import HealthReport


def report_text(report: HealthReport) -> str:
    """One line per finding, then how many there were in how many tensors."""
    lines = [f"{f.kind:<10} {f.key}: {f.text}" for f in report.findings]
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def summary_line(report: HealthReport) -> str:
    """`3 problems found in 17 tensors`, or `no problems found in 16 tensors`."""
    count = len(report.findings)
    if count:
        problems = "problem" if count == 1 else "problems"
        return f"{count} {problems} found in {report.scanned:,} tensors"
    return f"no problems found in {report.scanned:,} tensors"


def report_notes(report: HealthReport) -> list[str]:
    """What was not checked, and why: one line each."""
    notes = list(report.notes)
    by_reason: dict[str, list[str]] = {}
    for key, reason in report.skipped:
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        more = f" and {len(keys) - 1:,} more" if len(keys) > 1 else ""
        notes.append(f"not checked: {keys[0]}{more} ({reason})")
    return notes


def report_json(report: HealthReport) -> str:
    """The report as one JSON object."""
    return json.dumps(
        {
            "tensors": report.scanned,
            "findings": [
                {"kind": f.kind, "key": f.key, "numbers": f.numbers} for f in report.findings
            ],
            "skipped": [{"key": key, "reason": reason} for key, reason in report.skipped],
            "notes": report.notes,
        }
    )
