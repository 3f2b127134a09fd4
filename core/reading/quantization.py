"""Quantized weights as plain data: what a packed tensor stands for, read without torch.

A quantized weight is stored as pieces (packed words, scales, zeros, a group index) or as one
block-quantized tensor (GGUF). Either way the user is shown one logical weight: its logical
shape and true parameter count, the scheme, the bits per weight and the group size, with the
pieces it is made of. Counts and sizes everywhere (header, `--print`, subtree totals) use the
logical count, so a GPTQ 4096x4096 `q_proj` counts 16.8M parameters, not the 131.1K int32 words
that hold them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Quantization:
    """How one logical weight is stored.

    `scheme` names the format as users know it (`Q4_K`, `GPTQ`, `AWQ`, `bitsandbytes nf4`,
    `FP8 block`, ...); `bits` is the stored bits per weight, scales included where the format
    says so; `group_size` the weights sharing one scale (None where not grouped); `pieces` the
    keys the weight is made of, in the file's order (empty for a single block-quantized tensor).
    """

    scheme: str
    logical_shape: tuple[int, ...]
    bits: float
    group_size: int | None = None
    pieces: tuple[str, ...] = ()
    logical_dtype: str = "float16"

    @property
    def numel(self) -> int:
        return math.prod(self.logical_shape)
