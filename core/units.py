"""Human-readable numbers; no torch import, so widgets can use it before torch is loaded."""

from __future__ import annotations

_COUNT_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def human_count(n: int) -> str:
    """61100840 -> '61.1M', 23296 -> '23.3K', 10 -> '10'."""
    for scale, suffix in _COUNT_UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.1f}{suffix}"
    return str(n)


def human_bytes(n: int) -> str:
    """Bytes in binary units: 244403360 -> '233.1 MiB'."""
    value = float(n)
    for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or suffix == "TiB":
            return f"{int(value)} B" if suffix == "B" else f"{value:.1f} {suffix}"
        value /= 1024
    raise AssertionError("unreachable")


def shape_text(shape: tuple[int, ...]) -> str:
    """(64, 3, 11, 11) -> '(64, 3, 11, 11)'; () -> '()' for a scalar."""
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def printable(text: str, limit: int = 200) -> str:
    """Text from a model or file made safe to show: control characters escaped, long text elided."""
    if text.isprintable() and len(text) <= limit:
        return text  # the common case, without a pass over every character
    cleaned = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    if len(cleaned) > limit:
        keep = (limit - 1) // 2
        cleaned = cleaned[:keep] + "…" + cleaned[-keep:]
    return cleaned


def printable_lines(text: str, limit: int = 2000) -> str:
    """`printable` line by line: a message of several lines keeps its line breaks."""
    return "\n".join(printable(line, limit) for line in text.split("\n"))
