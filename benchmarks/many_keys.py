"""A million keys: `modelbrowse FILE --print` of a 1M-key safetensors file against `json`.

The file (written once per run, without torch: its header's JSON and a hole for the data) holds
1,000,000 float32 tensors of one element, `blocks.{i}.layers.{j}.weight` (100,000 blocks of ten
layers: a module per key, 1.2M modules in all, the most lines for its keys). Each sample is a
fresh process, timed from start to exit; its peak RSS comes from `wait4`. The baseline is a
process that reads the same file's header and parses it with `json.loads`, nothing else: the
least any reader of the file must do. Figures:

- `many_keys_print`: `--print` (the tree read without torch) / the `json` process; target 2x;
- `many_keys_print_peak_mib`: the peak RSS of `--print` / that of the `json` process; target 2x;
- `many_keys_print_depth1` and `many_keys_print_select`: `--print --depth 1` and
  `--print --select 'blocks.*.layers.3'` against the same baseline (informational: they read
  and index every key too, and print less).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks import (
    BenchmarkError,
    Context,
    Result,
    Sampler,
    SampleSet,
    Target,
    figure,
    memory_result,
    progress,
    ratio_result,
)
from benchmarks.fixtures import FIXTURES, MIB
from benchmarks.terminal import COMMAND

KEYS = 1_000_000
FILE_NAME = "keys-1m.safetensors"
TARGET_RATIO = 2.0
JSON_ONLY = (
    "import json, sys\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    json.loads(f.read(int.from_bytes(f.read(8), 'little')))\n"
)
_made: dict[str, Path] = {}


def write_many_keys(path: Path, keys: int = KEYS) -> None:
    """A safetensors file of `keys` one-element float32 tensors: header, then a hole."""
    parts = []
    for i in range(keys):
        begin = 4 * i
        parts.append(
            f'"blocks.{i // 10}.layers.{i % 10}.weight":'
            f'{{"dtype":"F32","shape":[1],"data_offsets":[{begin},{begin + 4}]}}'
        )
    header = ("{" + ",".join(parts) + "}").encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as handle:
        handle.write(len(header).to_bytes(8, "little"))
        handle.write(header)
        handle.truncate(8 + len(header) + 4 * keys)


def many_keys_file() -> Path:
    if FILE_NAME not in _made:
        path = FIXTURES.root / FILE_NAME
        progress(f"[many-keys] writing {path}")
        write_many_keys(path)
        _made[FILE_NAME] = path
    return _made[FILE_NAME]


# Runs the measured command as its child and reports that child's peak RSS. A process forked
# from this runner (hundreds of MiB by the later figures) would count the runner's pages as its
# own until it execs: the kernel keeps the larger high-water mark. The launcher is small.
LAUNCH = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure_process(argv: Sequence[str], timeout: float) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process, output discarded."""
    start = time.perf_counter()
    launcher = subprocess.run(
        [sys.executable, "-c", LAUNCH, *argv],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout * 2,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if launcher.returncode != 0:
        error = launcher.stderr.decode(errors="replace")
        raise BenchmarkError(
            f"`{' '.join(argv)}` exited with {launcher.returncode}:\n{error[-2000:]}"
        )
    if elapsed > timeout:
        raise BenchmarkError(f"`{' '.join(argv)}` took {elapsed:.1f} s, over {timeout:g} s")
    return elapsed, int(launcher.stdout.split()[-1]) * 1024 / MIB


def process_sampler(key: str, extra: Sequence[str]) -> Sampler:
    """`modelbrowse FILE --print EXTRA` (or the json baseline for key `json`)."""

    def measure(ctx: Context) -> dict[str, float]:
        path = str(many_keys_file())
        if key == "json":
            argv = [sys.executable, "-c", JSON_ONLY, path]
        else:
            argv = [str(COMMAND), path, "--print", *extra]
        seconds, peak = measure_process(argv, ctx.timeout * 3)
        return {key: seconds, f"{key}.peak_mib": peak}

    return Sampler(key, measure)


MANY_KEYS = SampleSet(
    "many-keys-print",
    samplers=(
        process_sampler("print", []),
        process_sampler("json", []),
        process_sampler("print_depth1", ["--depth", "1"]),
        process_sampler("print_select", ["--select", "blocks.*.layers.3"]),
    ),
    runs=3,
    quick_runs=1,
)


def _ratio(ctx: Context, name: str, key: str, description: str, target: Target) -> Result:
    return ratio_result(
        ctx,
        MANY_KEYS,
        name=name,
        description=description,
        value_key=key,
        baseline_key="json",
        baseline_name="a process that parses the file's header with json.loads",
        target=target,
    )


@figure("many_keys_print", quick=False)
def many_keys_print(ctx: Context) -> Result:
    """`--print` of a 1M-key safetensors file, against parsing its header with json."""
    return _ratio(
        ctx,
        "many_keys_print",
        "print",
        "`modelbrowse keys-1m.safetensors --print` (1M keys, 1.2M modules) / json.loads of its "
        "header, each a fresh process",
        Target(TARGET_RATIO),
    )


@figure("many_keys_print_peak_mib", quick=False)
def many_keys_peak(ctx: Context) -> Result:
    """Peak RSS of that `--print`, against the json process's."""
    return memory_result(
        ctx,
        MANY_KEYS,
        name="many_keys_print_peak_mib",
        description="peak RSS of `--print` of the 1M-key file (worst run) / that of json.loads "
        "of its header",
        value_key="print.peak_mib",
        baseline_key="json.peak_mib",
        baseline_name="a process that parses the file's header with json.loads (MiB)",
        target=Target(TARGET_RATIO),
    )


@figure("many_keys_print_depth1", quick=False)
def many_keys_depth1(ctx: Context) -> Result:
    """`--print --depth 1` of the 1M-key file (informational)."""
    return _ratio(
        ctx,
        "many_keys_print_depth1",
        "print_depth1",
        "`--print --depth 1` of the 1M-key file / json.loads of its header",
        Target(TARGET_RATIO, informational=True),
    )


@figure("many_keys_print_select", quick=False)
def many_keys_select(ctx: Context) -> Result:
    """`--print --select` of the 1M-key file (informational)."""
    return _ratio(
        ctx,
        "many_keys_print_select",
        "print_select",
        "`--print --select 'blocks.*.layers.3'` of the 1M-key file / json.loads of its header",
        Target(TARGET_RATIO, informational=True),
    )


if __name__ == "__main__":  # `python -m benchmarks.many_keys PATH [KEYS]`: write the file only
    write_many_keys(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else KEYS)
    print(json.dumps({"path": sys.argv[1]}))
