"""Benchmark harness for modelbrowse: figures are ratios against baselines timed in the same run.

Not part of the test suite. Run `python -m benchmarks` (or `--quick`) from the project root.

A figure is a small function registered with `@figure(...)`: it takes the `Context`, asks it for
the samples it needs (`ctx.samples(SOME_SET)`), and returns one `Result`. A `SampleSet` groups
samplers that are run interleaved, round by round, so that the thing measured and its baselines
see the same drift; the samples of a set are collected once and shared by every figure using it.
To add figures, write a module like `benchmarks/startup.py` and list it in `FIGURE_MODULES`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Modules whose import registers figures, in the order their figures are reported.
FIGURE_MODULES = (
    "benchmarks.startup",
    "benchmarks.save",
    "benchmarks.checkpoints",
    "benchmarks.screens",
    "benchmarks.before_torch",
    "benchmarks.interaction",
    "benchmarks.many_keys",
    "benchmarks.gguf_file",
    "benchmarks.health_check",
    "benchmarks.merge",
)

DEFAULT_TIMEOUT_S = 60.0


class BenchmarkError(Exception):
    """A run failed or timed out; the message says which and why."""


class EnvironmentProblem(Exception):
    """Something the benchmarks need is missing (tmux, the console script); exit status 2."""


@dataclass(frozen=True)
class Target:
    """A pass condition: `ratio <= limit`, or `value <= limit` (seconds) for `kind="value"`."""

    limit: float
    kind: str = "ratio"
    informational: bool = False

    def check(self, value: float, ratio: float | None) -> bool:
        """Whether the figure meets the target."""
        measured = value if self.kind == "value" else ratio
        return measured is not None and measured <= self.limit

    def describe(self) -> str:
        """`ratio <= 1.1`, `<= 0.300 s`, with `(info)` for an informational target."""
        text = f"ratio <= {self.limit}" if self.kind == "ratio" else f"<= {self.limit:.3f} s"
        return f"{text} (info)" if self.informational else text


@dataclass(frozen=True)
class HeadroomTarget(Target):
    """A pass condition in MiB (memory, bytes read): `value <= baseline + limit`."""

    kind: str = "headroom"

    def check(self, value: float, ratio: float | None) -> bool:
        baseline = value / ratio if ratio else 0.0  # no ratio: the baseline is 0
        return value - baseline <= self.limit

    def describe(self) -> str:
        text = f"<= baseline + {self.limit:.0f} MiB"
        return f"{text} (info)" if self.informational else text


@dataclass
class Result:
    """One figure: medians of the samples, the ratio, and whether the target is met."""

    figure: str
    description: str
    value: float | None = None
    baseline: float | None = None
    baseline_name: str = ""
    target: Target | None = None
    runs: int = 0
    samples: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None
    unit: str = "s"

    @property
    def ratio(self) -> float | None:
        """value / baseline, or None without a baseline."""
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        """True or False against the target; None with no target or after an error."""
        if self.error is not None or self.target is None or self.value is None:
            return None
        return self.target.check(self.value, self.ratio)

    @property
    def verdict(self) -> str:
        """`pass`, `FAIL`, `pass (info)`, `fail (info)`, `info` or `ERROR`."""
        if self.error is not None:
            return "ERROR"
        if self.target is None or self.passed is None:
            return "info"
        if self.target.informational:
            return "pass (info)" if self.passed else "fail (info)"
        return "pass" if self.passed else "FAIL"

    @property
    def counts_as_failure(self) -> bool:
        """An error, or a missed target that is not informational."""
        if self.error is not None:
            return True
        return self.passed is False and self.target is not None and not self.target.informational

    def to_json(self) -> dict[str, Any]:
        """The row as JSON, with the raw samples."""
        return {
            "figure": self.figure,
            "description": self.description,
            "value": self.value,
            "baseline_value": self.baseline,
            "unit": self.unit,
            "baseline": self.baseline_name,
            "ratio": self.ratio,
            "target": self.target.describe() if self.target else None,
            "target_kind": self.target.kind if self.target else None,
            "target_limit": self.target.limit if self.target else None,
            "informational": self.target.informational if self.target else True,
            "pass": self.passed,
            "verdict": self.verdict,
            "runs": self.runs,
            "samples": self.samples,
            "error": self.error,
        }


@dataclass(frozen=True)
class Sampler:
    """Times one thing once: returns named durations in seconds (several for one app run)."""

    name: str
    measure: Callable[[Context], dict[str, float]]
    full_only: bool = False


@dataclass(frozen=True)
class SampleSet:
    """Samplers run interleaved (order rotated each round) after untimed warm-up commands.

    The warm-up (filling the page cache) is skipped with `--quick`, to stay under a minute.
    A sampler that fails ends the whole set, unless `independent`: then only that sampler is
    dropped from the rounds left, and the figures that need its samples report its error.
    """

    name: str
    samplers: tuple[Sampler, ...]
    runs: int
    quick_runs: int
    warmup: tuple[Sequence[str], ...] = ()
    independent: bool = False


@dataclass(frozen=True)
class Figure:
    """A registered figure function."""

    name: str
    func: Callable[[Context], Result]
    quick: bool


FIGURES: list[Figure] = []


def figure(name: str, *, quick: bool = True) -> Callable[[Callable[[Context], Result]], Any]:
    """Register a figure function; `quick=False` leaves it out of `--quick`."""

    def register(func: Callable[[Context], Result]) -> Callable[[Context], Result]:
        if any(f.name == name for f in FIGURES):
            raise ValueError(f"figure {name!r} is registered twice")
        FIGURES.append(Figure(name, func, quick))
        return func

    return register


def progress(message: str) -> None:
    """A progress line on stderr, so stdout keeps only the table."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Context:
    """Options of this run and the cache of collected sample sets."""

    quick: bool = False
    timeout: float = DEFAULT_TIMEOUT_S
    runs_override: int | None = None
    _cache: dict[str, dict[str, list[float]] | BenchmarkError] = field(default_factory=dict)
    _failed: dict[str, dict[str, str]] = field(default_factory=dict)
    # Wall seconds each sample set took (warm-up included): where a run's time goes.
    set_seconds: dict[str, float] = field(default_factory=dict)

    def runs_for(self, sample_set: SampleSet) -> int:
        """How many rounds of the set this run does."""
        if self.runs_override is not None:
            return self.runs_override
        return sample_set.quick_runs if self.quick else sample_set.runs

    def samples(self, sample_set: SampleSet) -> dict[str, list[float]]:
        """The samples of a set, collected on first use; a failure is remembered and re-raised."""
        cached = self._cache.get(sample_set.name)
        if cached is None:
            started = time.perf_counter()
            try:
                cached = self._collect(sample_set)
            except BenchmarkError as exc:
                cached = exc
            self._cache[sample_set.name] = cached
            seconds = time.perf_counter() - started
            self.set_seconds[sample_set.name] = round(seconds, 1)
            progress(f"[{sample_set.name}] done in {seconds:.0f} s")
        if isinstance(cached, BenchmarkError):
            raise cached
        return cached

    def failure(self, sample_set: SampleSet, key: str) -> str | None:
        """Why the sampler giving `key` (`NAME` or `NAME.x`) failed in the set, if it did."""
        for name, error in self._failed.get(sample_set.name, {}).items():
            if key == name or key.startswith(name + "."):
                return f"{name}: {error}"
        return None

    def _collect(self, sample_set: SampleSet) -> dict[str, list[float]]:
        samplers = [s for s in sample_set.samplers if not (self.quick and s.full_only)]
        rounds = self.runs_for(sample_set)
        for argv in () if self.quick else sample_set.warmup:
            progress(f"[{sample_set.name}] warm-up: {' '.join(argv)}")
            run_command(argv, self.timeout)
        collected: dict[str, list[float]] = {}
        failed = self._failed.setdefault(sample_set.name, {})
        for r in range(rounds):
            shift = r % len(samplers)
            for sampler in samplers[shift:] + samplers[:shift]:
                if sampler.name in failed:
                    continue
                try:
                    measured = sampler.measure(self)
                except BenchmarkError as exc:
                    if not sample_set.independent:
                        raise
                    failed[sampler.name] = str(exc)
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    progress(f"[{sample_set.name}] {sampler.name} failed, left out: {first}")
                    if len(failed) == len(samplers):
                        raise BenchmarkError("every sampler failed; first: " + str(exc)) from exc
                    continue
                for key, seconds in measured.items():
                    collected.setdefault(key, []).append(seconds)
            summary = ", ".join(f"{k} {v[-1]:.3f}" for k, v in collected.items())
            progress(f"[{sample_set.name}] round {r + 1}/{rounds}: {summary}")
        return collected


def median(values: Sequence[float]) -> float:
    """The median of the samples."""
    return statistics.median(values)


def ratio_result(
    ctx: Context,
    sample_set: SampleSet,
    *,
    name: str,
    description: str,
    value_key: str,
    baseline_key: str | None,
    baseline_name: str = "",
    target: Target | None = None,
) -> Result:
    """A figure from the median of one sample series against the median of another."""
    result = Result(name, description, baseline_name=baseline_name, target=target)
    try:
        samples = ctx.samples(sample_set)
    except BenchmarkError as exc:
        result.error = str(exc)
        return result
    keys = [value_key] if baseline_key is None else [value_key, baseline_key]
    missing = [k for k in keys if not samples.get(k)]
    if missing:
        reasons = sorted({r for k in missing if (r := ctx.failure(sample_set, k)) is not None})
        result.error = "\n".join(reasons) or f"no samples for {', '.join(missing)}"
        return result
    result.value = median(samples[value_key])
    result.runs = len(samples[value_key])
    result.samples = {k: samples[k] for k in keys}
    if baseline_key is not None:
        result.baseline = median(samples[baseline_key])
    return result


def memory_result(
    ctx: Context,
    sample_set: SampleSet,
    *,
    name: str,
    description: str,
    value_key: str,
    baseline_key: str,
    baseline_name: str,
    target: Target,
) -> Result:
    """A MiB figure: the largest sample of value_key (the worst run) against a median."""
    result = ratio_result(
        ctx,
        sample_set,
        name=name,
        description=description,
        value_key=value_key,
        baseline_key=baseline_key,
        baseline_name=baseline_name,
        target=target,
    )
    result.unit = "MiB"
    if result.error is None:
        result.value = max(result.samples[value_key])
    return result


def extra_series(result: Result, ctx: Context, sample_set: SampleSet, *keys: str) -> Result:
    """More series of the set in the result's samples, for reading the JSON."""
    try:
        samples = ctx.samples(sample_set)
    except BenchmarkError:
        return result
    for key in keys:
        if samples.get(key):
            result.samples[key] = samples[key]
    return result


def run_command(argv: Sequence[str], timeout: float) -> float:
    """Run a command to completion (output discarded); returns its wall time in seconds."""
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(
            f"`{' '.join(argv)}` did not finish within {timeout:g} s "
            "(the limit per run; --timeout changes it)"
        ) from exc
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        tail = completed.stderr.decode(errors="replace").strip()[-2000:]
        raise BenchmarkError(
            f"`{' '.join(argv)}` exited with status {completed.returncode}:\n{tail}"
        )
    return elapsed


def command_sampler(key: str, argv: Sequence[str], *, full_only: bool = False) -> Sampler:
    """A sampler that times one command under the key."""
    frozen = tuple(argv)
    return Sampler(key, lambda ctx: {key: run_command(frozen, ctx.timeout)}, full_only)


def python_sampler(key: str, code: str, *, full_only: bool = False) -> Sampler:
    """A sampler that times `python -c CODE` with this interpreter."""
    return command_sampler(key, (sys.executable, "-c", code), full_only=full_only)
