"""The probe of a model source, as `--print --probe` runs it: build, choose inputs, run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from modelbrowse.core.arguments import example_input
from modelbrowse.core.probe.inputs import probe_inputs, probe_target
from modelbrowse.core.probe.result import ProbeError, ProbeResult
from modelbrowse.core.probe.running import Progress, run_probe

if TYPE_CHECKING:
    from modelbrowse.core.sources.base import Source


def probe_source(
    source: Source,
    input_shape: str | None,
    input_dtype: str | None,
    *,
    input_file: Path | None = None,
    target_file: Path | None = None,
    train: bool = False,
    backward: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> ProbeResult:
    """Build `source` for real (random values from `seed` where it has no weights), make its
    inputs (`--input-shape`/`--input-dtype`, else the source's default, or `input_file`) and
    probe it."""
    if source.weights_only:
        raise ProbeError(
            f"{source.label} holds weights without an architecture, so there is no forward to "
            "run: give --arch"
        )
    target = probe_target(target_file) if target_file is not None else None
    model = source.build_real(seed)
    example = example_input(input_shape, input_dtype, source.default_input)
    inputs = probe_inputs(model, example, input_file, source.weights, seed=seed)
    return run_probe(
        model,
        inputs,
        train=train,
        backward=backward,
        target=target,
        progress=progress,
        cancel=cancel,
    )
