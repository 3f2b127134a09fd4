"""What a GGUF file says about its model, as the root's rows: the architecture and its settings
first, the tokenizer and the weights by type, then every metadata entry, long arrays summarised.

Values are made text here and escaped where they are shown (`core.units.printable`): a string
from the file may hold any character.
"""

from __future__ import annotations

from modelbrowse.core.reading.ggml_types import FILE_TYPES, GGML_TYPES
from modelbrowse.core.reading.gguf import GGUFArray, GGUFContents, Value
from modelbrowse.core.units import human_bytes, human_count

# Settings of the architecture worth a row of their own: `{arch}.KEY` -> the row's label.
_ARCHITECTURE_ROWS = (
    ("context_length", "context length"),
    ("block_count", "layers"),
    ("embedding_length", "embedding length"),
    ("feed_forward_length", "feed-forward length"),
    ("attention.head_count", "attention heads"),
    ("attention.head_count_kv", "key-value heads"),
    ("expert_count", "experts"),
)
_BITS = {t.name: t.bits for t in GGML_TYPES.values()}


def gguf_rows(contents: GGUFContents) -> list[tuple[str, str]]:
    """The root's rows for a GGUF file or split set, after its format."""
    metadata = contents.metadata
    rows: list[tuple[str, str]] = []
    architecture = metadata.get("general.architecture")
    if isinstance(architecture, str):
        rows.append(("architecture", architecture))
    name = metadata.get("general.name")
    if isinstance(name, str):
        rows.append(("name", name))
    for key, label in _ARCHITECTURE_ROWS:
        value = metadata.get(f"{architecture}.{key}")
        if value is not None:
            rows.append((label, format_value(value)))
    tokenizer = _tokenizer(metadata)
    if tokenizer:
        rows.append(("tokenizer", tokenizer))
    file_type = metadata.get("general.file_type")
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        rows.append(("file type", FILE_TYPES.get(file_type, f"unknown ({file_type})")))
    rows += type_rows(contents)
    rows += [(key, format_value(value)) for key, value in metadata.items()]
    return rows


def gguf_format(contents: GGUFContents) -> str:
    """`GGUF v3`, and how many files a split set has."""
    parts = len(contents.files)
    return f"GGUF v{contents.version}" + (f", split in {parts} files" if parts > 1 else "")


def type_rows(contents: GGUFContents) -> list[tuple[str, str]]:
    """One row per GGML type, most bytes first: its tensors, parameters, size, bits per weight."""
    totals: dict[str, list[int]] = {}
    for name, record in contents.tensors.items():
        found = totals.setdefault(contents.types[name], [0, 0, 0])
        found[0] += 1
        found[1] += record.numel if record.quantization is None else record.quantization.numel
        found[2] += record.storage.nbytes
    rows = []
    for type_name, (count, params, nbytes) in sorted(totals.items(), key=lambda i: -i[1][2]):
        text = f"{count:,} tensor{'' if count == 1 else 's'}, {human_count(params)} params, "
        text += f"{human_bytes(nbytes)} ({_BITS[type_name]:g} bits per weight)"
        rows.append((f"weights {type_name}", text))
    return rows


def _tokenizer(metadata: dict[str, Value]) -> str:
    model = metadata.get("tokenizer.ggml.model")
    tokens = metadata.get("tokenizer.ggml.tokens")
    parts = [model] if isinstance(model, str) else []
    if isinstance(tokens, GGUFArray):
        parts.append(f"vocabulary of {tokens.count:,} tokens")
    return ", ".join(parts)


def format_value(value: Value) -> str:
    """A metadata value as text: numbers as written, float32 without its binary noise, arrays
    of more than a few items as their count and first items."""
    if isinstance(value, GGUFArray):
        return _array_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.7g}"
    return str(value)


def _array_text(array: GGUFArray) -> str:
    items = [repr(v) if isinstance(v, str) else format_value(v) for v in array.head]
    if array.count <= len(array.head):
        return "[" + ", ".join(items) + "]"
    what = "strings" if array.item_type == "string" else f"{array.item_type} values"
    return f"[{array.count:,} {what}: " + ", ".join(items) + ", …]"
