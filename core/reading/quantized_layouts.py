"""Quantized layers told from a checkpoint's keys: which keys make one logical weight.

A GPTQ `q_proj` is stored as `qweight`, `qzeros`, `scales` and `g_idx`; a bitsandbytes one as a
packed `weight` with `weight.absmax`, `weight.quant_state.bitsandbytes__nf4`, ... . `find_quantized`
groups such pieces into one `QuantizedLayout` per layer: its logical key and shape, the scheme,
bits and group size (`core.reading.quantization.Quantization`), and what dequantizing it needs.

The logical shape comes from the pieces' shapes (or, for bitsandbytes 4-bit and
compressed-tensors, from a small tensor that holds it) and is checked against them all: a
config (`quantization_config` in config.json) can choose between layouts or name the bits, but
never make a layer count more weights than its bytes hold. A layer that does not fit is left as
its stored keys, and a row says why. Torch-free: tensors are described by the caller (records
before torch, tensors after), and small tensors are read through `read_small`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelbrowse.core.reading.limits import ReadError
from modelbrowse.core.reading.quantization import Quantization
from modelbrowse.core.reading.records import ITEM_SIZES, TensorRecord
from modelbrowse.core.reading.structured_text import read_json
from modelbrowse.core.units import printable

# dtype name and shape of one tensor, as the caller describes it.
Described = tuple[str, tuple[int, ...]]
Describe = Callable[[Any], Described]
# The bytes of the tensor under a key, at most `limit` of them (a ReadError beyond).
ReadSmall = Callable[[str, int], bytes]
Row = tuple[str, str]

# Config files that describe a folder's quantization: config.json's entry, or a file of its own
# (AutoGPTQ's quantize_config.json, AutoAWQ's quant_config.json).
CONFIG_ENTRIES = ("quantization_config", "compression_config")
OWN_CONFIG_FILES = ("quantize_config.json", "quant_config.json")


@dataclass(frozen=True, slots=True)
class QuantizedLayout:
    """One logical weight stored as pieces: `pieces` maps a role (`qweight`, `absmax`, ...) to
    the key holding it; `options` holds what dequantizing needs (bits, block sizes, offsets)."""

    key: str
    method: str  # gptq, awq, bnb4, bnb8, fp8, mxfp4, compressed
    quantization: Quantization
    pieces: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)
    grouping: str = ""  # how scales are shared, in words: "groups of 128 inputs"
    unsupported: str | None = None  # why it cannot be dequantized, or None


@dataclass
class QuantizedKeys:
    """The quantized layers of a checkpoint: logical key -> layout, piece key -> logical key,
    and the rows the root shows about them."""

    layouts: dict[str, QuantizedLayout] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # why layers were left as stored


@dataclass(frozen=True)
class QuantConfig:
    """What a quantization config says, each field None where it says nothing usable."""

    method: str | None = None
    bits: int | None = None
    group_size: int | None = None
    checkpoint_format: str | None = None
    version: str | None = None
    block: tuple[int, int] | None = None
    group_bits: frozenset[int] = frozenset()  # compressed-tensors: num_bits of its groups
    source: str = ""  # the file it came from, for rows
    problems: tuple[str, ...] = ()


def read_quant_config(folder: Path) -> tuple[QuantConfig | None, list[Row]]:
    """The quantization config of a model folder, or None; rows say what could not be used."""
    for name in ("config.json", *OWN_CONFIG_FILES):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = read_json(path, name)
        except ReadError as exc:
            return None, [("quantization config", f"{name} unreadable: {exc}")]
        if name == "config.json":
            if not isinstance(data, dict):
                continue
            found = [data[e] for e in CONFIG_ENTRIES if e in data]
            if not found:
                continue
            data = found[0]
        if not isinstance(data, dict):
            return None, [("quantization config", f"{name}: not a JSON object, not used")]
        config = parse_quant_config(data, name)
        return config, [("quantization config", f"{name}: {p}") for p in config.problems]
    return None, []


def parse_quant_config(data: Mapping[str, Any], source: str) -> QuantConfig:
    """The usable fields of a quantization config; anything else is a problem, not an error."""
    problems: list[str] = []

    def text(name: str) -> str | None:
        value = data.get(name)
        if value is None:
            return None
        if isinstance(value, str) and len(value) <= 64:
            return printable(value.lower(), 64)  # shown in messages: escaped
        problems.append(f"{name} is not a short string, not used")
        return None

    def count(name: str, allowed: Callable[[int], bool]) -> int | None:
        value = data.get(name)
        if value is None:
            return None
        if type(value) is int and allowed(value):
            return value
        problems.append(f"{name} {_shown(value)} is not usable, not used")
        return None

    method = text("quant_method")
    if method is None and ("w_bit" in data or "q_group_size" in data):
        method = "awq"  # AutoAWQ's own quant_config.json
    bits = count("bits", lambda n: 1 <= n <= 8) or count("w_bit", lambda n: 1 <= n <= 8)
    group = count("group_size", _group_ok) or count("q_group_size", _group_ok)
    block = None
    raw_block = data.get("weight_block_size")
    if raw_block is not None:
        if (
            isinstance(raw_block, list)
            and len(raw_block) == 2
            and all(type(n) is int and 1 <= n <= 1 << 20 for n in raw_block)
        ):
            block = (raw_block[0], raw_block[1])
        else:
            problems.append(f"weight_block_size {_shown(raw_block)} is not two sizes, not used")
    return QuantConfig(
        method=method,
        bits=bits,
        group_size=group,
        checkpoint_format=text("checkpoint_format"),
        version=text("version"),
        block=block,
        group_bits=_group_bits(data.get("config_groups")),
        source=source,
        problems=tuple(problems),
    )


def _group_ok(n: int) -> bool:
    return n == -1 or 1 <= n <= 1 << 30


def _group_bits(groups: Any) -> frozenset[int]:
    """compressed-tensors: the num_bits its config groups give weights."""
    if not isinstance(groups, dict):
        return frozenset()
    found = set()
    for group in list(groups.values())[:64]:
        weights = group.get("weights") if isinstance(group, dict) else None
        bits = weights.get("num_bits") if isinstance(weights, dict) else None
        if type(bits) is int and 1 <= bits <= 8:
            found.add(bits)
    return frozenset(found)


def _shown(value: Any) -> str:
    return repr(value)[:40]


# --- finding the layers ---------------------------------------------------------------------

PLAIN = (".weight", ".bias")
# A key ending in one of these may be a piece of a quantized layer; other keys are passed by.
TRIGGERS = (
    ".qweight",
    ".SCB",
    "__nf4",
    "__fp4",
    ".weight_packed",
    ".weight_scale_inv",
    ".weight_scale",
    "_blocks",
)


def find_quantized(
    tensors: Mapping[str, Any],
    describe: Describe,
    config: QuantConfig | None,
    read_small: ReadSmall,
) -> QuantizedKeys:
    """The quantized layers among `tensors` (key -> anything `describe` describes)."""
    from modelbrowse.core.reading.quantized_schemes import layout_at

    found = QuantizedKeys()
    problems: list[str] = []
    config = config or QuantConfig()
    for key in tensors:
        # Most keys are plain weights and biases: passed by with one check (a 1M-key file
        # in 60 ms, where the triggers alone took twice as long).
        if key.endswith(PLAIN) or not key.endswith(TRIGGERS):
            continue
        try:
            layout = layout_at(key, tensors, describe, config, read_small)
        except ReadError as exc:
            layout = str(exc)
        if layout is None:
            continue
        if isinstance(layout, str):
            problems.append(layout)
            continue
        if layout.key in found.layouts or any(k in found.owner for k in layout.pieces.values()):
            continue
        found.layouts[layout.key] = layout
        for piece in layout.pieces.values():
            found.owner[piece] = layout.key
    _drop_clashes(found, tensors, problems)
    found.layouts = dict(sorted(found.layouts.items()))
    found.rows = _rows(found, config, problems)
    found.problems = problems
    return found


def _drop_clashes(found: QuantizedKeys, tensors: Mapping[str, Any], problems: list[str]) -> None:
    """A logical key that is another tensor's key, or the prefix of another tensor's key, would
    put a weight where the tree has something else: that layer stays as its stored keys."""
    if not found.layouts:
        return
    clashing = set()
    for key in tensors:
        if key in found.owner:
            continue
        if key in found.layouts:
            clashing.add(key)
        prefix = key.rpartition(".")[0]
        while prefix:
            if prefix in found.layouts:
                clashing.add(prefix)
            prefix = prefix.rpartition(".")[0]
    for key in clashing:
        layout = found.layouts.pop(key)
        for piece in layout.pieces.values():
            found.owner.pop(piece, None)
        problems.append(f"{key!r} is also the name of another tensor or its prefix")


def _rows(found: QuantizedKeys, config: QuantConfig, problems: list[str]) -> list[Row]:
    """One row per scheme (`GPTQ 4-bit, group size 128: 154 weights`), and one for the layers
    left as stored keys."""
    by_scheme: dict[str, int] = {}
    for layout in found.layouts.values():
        words = scheme_text(layout)
        words = f"{words}, {layout.grouping}" if layout.grouping else words
        by_scheme[words] = by_scheme.get(words, 0) + 1
    rows = [
        ("quantization", f"{words}: {n:,} weight{'' if n == 1 else 's'}")
        for words, n in by_scheme.items()
    ]
    if rows and config.source:
        rows[0] = (rows[0][0], f"{rows[0][1]} ({config.source})")
    if problems:
        more = f" (and {len(problems) - 1:,} more)" if len(problems) > 1 else ""
        rows.append(("quantized keys", f"shown as stored: {problems[0]}{more}"))
    return rows


def scheme_text(layout: QuantizedLayout) -> str:
    """`GPTQ 4-bit`, `bitsandbytes nf4`, `FP8 block`: the scheme as users name it."""
    q = layout.quantization
    return f"{q.scheme} {q.bits:g}-bit" if layout.method in ("gptq", "awq") else q.scheme


# --- describing tensors ---------------------------------------------------------------------


def describe_record(record: TensorRecord) -> Described:
    return record.dtype, record.shape


def record_bytes(record: TensorRecord, limit: int) -> bytes:
    """The bytes of a small contiguous tensor record, read from its file."""
    nbytes = record.nbytes
    if nbytes > limit:
        raise ReadError(f"a {nbytes:,}-byte tensor where at most {limit:,} are expected")
    if record.extent() != record.numel:
        raise ReadError("a tensor that is not contiguous where a small array is expected")
    start = record.storage.start + record.offset * record.itemsize
    try:
        with open(record.storage.file, "rb") as handle:
            handle.seek(start)
            data = handle.read(nbytes)
    except OSError as exc:
        raise ReadError(f"cannot read {record.storage.file}: {exc.strerror or exc}") from None
    if len(data) != nbytes:
        raise ReadError(f"{record.storage.file} ends inside a tensor (truncated?)")
    return data


def stored_bytes(described: Described) -> int:
    dtype, shape = described
    return math.prod(shape) * ITEM_SIZES.get(dtype, 1)
