"""The probe in a session: its state (none, running, done, stale, failed), its settings and
its result, and the worker's part of a run. No torch at import: `core.probe` is imported by
the worker."""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelbrowse.core.arguments import ExampleInput
    from modelbrowse.core.probe import GradStats, OutputStats, ProbeResult
    from modelbrowse.core.session.session import Session


class ProbeState(enum.Enum):
    NONE = "none"  # never run
    RUNNING = "running"
    DONE = "done"
    STALE = "stale"  # an edit, undo or redo since the run: the numbers are of another model
    FAILED = "failed"


@dataclass(frozen=True)
class ProbeSettings:
    """What the probe dialog asks: train mode, and a backward pass after the forward."""

    train: bool = False
    backward: bool = False


@dataclass(frozen=True)
class ProbeInput:
    """What the probe feeds the model: the example input (a shape, random values) or a file."""

    example: ExampleInput | None
    file: Path | None
    text: str  # how the dialog names it
    target: Path | None = None  # `--target`: the loss is cross-entropy against it


class Probe:
    """One session's probe: the last result, kept (marked stale) across edits until the next
    run replaces it. Changes on the UI thread; `run` is the worker's part."""

    def __init__(self) -> None:
        self.state = ProbeState.NONE
        self.result: ProbeResult | None = None
        self.settings = ProbeSettings()
        self.message = ""  # why the last run failed
        self._cancel: threading.Event | None = None
        self._before = ProbeState.NONE  # the state a cancelled run goes back to

    @property
    def running(self) -> bool:
        return self.state is ProbeState.RUNNING

    @property
    def stale(self) -> bool:
        return self.state is ProbeState.STALE

    @property
    def shown(self) -> ProbeResult | None:
        """The result the tree and the pane show (stale ones too), or None."""
        return self.result if self.state in (ProbeState.DONE, ProbeState.STALE) else None

    def begin(self, settings: ProbeSettings) -> threading.Event:
        """A run starts; the event it returns cancels it."""
        self._before = self.state
        self.state = ProbeState.RUNNING
        self.settings = settings
        self._cancel = threading.Event()
        return self._cancel

    def cancel(self) -> bool:
        """Ask the run under way to stop; False when none runs."""
        if not self.running or self._cancel is None:
            return False
        self._cancel.set()
        return True

    def finished(self, result: ProbeResult) -> None:
        self.state, self.result, self._cancel = ProbeState.DONE, result, None

    def failed(self, message: str) -> None:
        self.state, self.message, self._cancel = ProbeState.FAILED, message, None
        self.result = None

    def cancelled(self) -> None:
        """The run stopped: what was shown before it stays."""
        self.state, self._cancel = self._before, None

    def mark_stale(self) -> None:
        """The model changed: the numbers describe the model before the change."""
        if self.state is ProbeState.DONE:
            self.state = ProbeState.STALE
        elif self.running and self._before is ProbeState.DONE:
            self._before = ProbeState.STALE

    def output(self, path: str) -> OutputStats | None:
        result = self.shown
        return None if result is None else result.outputs.get(path)

    def grad(self, path: str) -> GradStats | None:
        result = self.shown
        return None if result is None else result.grads.get(path)

    def bad_modules(self) -> list[str]:
        """Modules whose output holds NaN or Inf, in execution order: the first producer
        first, and no container whose output has them only because a module inside made them."""
        result = self.shown
        if result is None:
            return []
        bad = [path for _, path in sorted((s.order, p) for p, s in result.outputs.items() if s.bad)]
        containers = set()
        for path in bad:
            while path:
                path = path.rpartition(".")[0]
                containers.add(path)
        found = [path for path in bad if path not in containers or path == result.first_bad]
        if result.first_bad in found:
            found.remove(result.first_bad)
            found.insert(0, result.first_bad)
        return found

    # --- the session's part ------------------------------------------------------------------

    @staticmethod
    def refusal(session: Session) -> str | None:
        """Why the model cannot be run now, or None."""
        if session.previewing or session.index is None or session.source is None:
            return "the model is still loading"
        if session.diff_view is not None:
            return "a comparison has no model to run"
        if session.request.meta and session.index.is_meta:
            return "--meta: the model has no values to run (open it without --meta)"
        weights_only = session.weights_only_refusal("the probe")
        if weights_only is not None:
            return weights_only
        return session.build_refusal()

    @staticmethod
    def input_for(session: Session) -> ProbeInput:
        """`--input FILE` where given, else `--input-shape` (or the source's default), else a
        shape the first layer takes."""
        from modelbrowse.core.arguments import describe_input
        from modelbrowse.core.example_inputs import input_dtypes, input_hint

        assert session.index is not None
        model = session.index.model
        target_file = getattr(session.request, "target_file", None)
        target = Path(target_file) if target_file else None
        file = getattr(session.request, "input_file", None)
        if file:
            return ProbeInput(None, Path(file), f"{file} (--input)", target)
        example = session.example_input()
        how = "--input-shape" if session.request.input_shape else "the model's default input"
        if example is None:
            from modelbrowse.core.arguments import parse_example_input

            example = parse_example_input(input_hint(model), session.request.input_dtype)
            how = "a shape its first layer takes; --input-shape sets it"
        shape = describe_input(example.shapes, input_dtypes(model, example))
        return ProbeInput(example, None, f"random {shape} ({how})", target)

    @staticmethod
    def run(
        session: Session,
        given: ProbeInput,
        settings: ProbeSettings,
        progress: Callable[[int, int], None],
        cancel: threading.Event,
    ) -> ProbeResult:
        """The worker's part: build the input and run the model once; raises
        `ModelBrowseError` (or `ProbeCancelled`)."""
        from modelbrowse.core.probe import probe_inputs, probe_target, run_probe

        assert session.history is not None and session.source is not None
        model = session.history.model
        seed = session.init_seed or 0
        inputs = probe_inputs(model, given.example, given.file, session.source.weights, seed=seed)
        use_target = settings.backward and given.target is not None
        target = probe_target(given.target) if use_target and given.target else None
        return run_probe(
            model,
            inputs,
            train=settings.train,
            backward=settings.backward,
            target=target,
            progress=progress,
            cancel=cancel,
        )
