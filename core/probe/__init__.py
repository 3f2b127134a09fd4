"""The probe: one pass of the model on an example input, with statistics of every module's
output (and, after a backward pass, of every parameter's gradient) and never the activations.

The records and the text table import without torch; `run_probe` and `probe_inputs` import it
when first used (`modelbrowse.core.probe.running`, `modelbrowse.core.probe.inputs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelbrowse.core.probe.result import (
    GradStats,
    OutputStats,
    ProbeCancelled,
    ProbeError,
    ProbeResult,
)
from modelbrowse.core.probe.text import probe_table

if TYPE_CHECKING:
    from modelbrowse.core.probe.inputs import probe_inputs, probe_target
    from modelbrowse.core.probe.running import run_probe

__all__ = [
    "GradStats",
    "OutputStats",
    "ProbeCancelled",
    "ProbeError",
    "ProbeResult",
    "probe_inputs",
    "probe_table",
    "probe_target",
    "run_probe",
]

_LATE = {
    "run_probe": "modelbrowse.core.probe.running",
    "probe_inputs": "modelbrowse.core.probe.inputs",
    "probe_target": "modelbrowse.core.probe.inputs",
}


def __getattr__(name: str) -> Any:
    """`run_probe` and `probe_inputs` (which import torch), imported when first asked for."""
    if name in _LATE:
        import importlib

        return getattr(importlib.import_module(_LATE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
