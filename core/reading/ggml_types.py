"""GGML's tensor types: how many weights a block holds and how many bytes store it.

The ids and sizes are ggml's (`GGML_QUANT_SIZES` in gguf-py's constants.py); a block-quantized
type stores `block_size` weights in `type_size` bytes, scales included, so its bits per weight
are `type_size * 8 / block_size` (Q4_K: 144 bytes for 256 weights, 4.5 bits).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GGMLType:
    """A tensor type: `block_size` weights stored in `type_size` bytes; `dtype` for the types
    whose values map directly (F16 is float16), None for the block-quantized ones."""

    name: str
    block_size: int
    type_size: int
    dtype: str | None = None

    @property
    def bits(self) -> float:
        return self.type_size * 8 / self.block_size


# ggml's type ids and sizes (GGML_QUANT_SIZES in gguf-py's constants.py).
GGML_TYPES: dict[int, GGMLType] = {
    0: GGMLType("F32", 1, 4, "float32"),
    1: GGMLType("F16", 1, 2, "float16"),
    2: GGMLType("Q4_0", 32, 18),
    3: GGMLType("Q4_1", 32, 20),
    6: GGMLType("Q5_0", 32, 22),
    7: GGMLType("Q5_1", 32, 24),
    8: GGMLType("Q8_0", 32, 34),
    9: GGMLType("Q8_1", 32, 40),
    10: GGMLType("Q2_K", 256, 84),
    11: GGMLType("Q3_K", 256, 110),
    12: GGMLType("Q4_K", 256, 144),
    13: GGMLType("Q5_K", 256, 176),
    14: GGMLType("Q6_K", 256, 210),
    15: GGMLType("Q8_K", 256, 292),
    16: GGMLType("IQ2_XXS", 256, 66),
    17: GGMLType("IQ2_XS", 256, 74),
    18: GGMLType("IQ3_XXS", 256, 98),
    19: GGMLType("IQ1_S", 256, 50),
    20: GGMLType("IQ4_NL", 32, 18),
    21: GGMLType("IQ3_S", 256, 110),
    22: GGMLType("IQ2_S", 256, 82),
    23: GGMLType("IQ4_XS", 256, 136),
    24: GGMLType("I8", 1, 1, "int8"),
    25: GGMLType("I16", 1, 2, "int16"),
    26: GGMLType("I32", 1, 4, "int32"),
    27: GGMLType("I64", 1, 8, "int64"),
    28: GGMLType("F64", 1, 8, "float64"),
    29: GGMLType("IQ1_M", 256, 56),
    30: GGMLType("BF16", 1, 2, "bfloat16"),
    34: GGMLType("TQ1_0", 256, 54),
    35: GGMLType("TQ2_0", 256, 66),
    39: GGMLType("MXFP4", 32, 17),
    40: GGMLType("NVFP4", 64, 36),
    41: GGMLType("Q1_0", 128, 18),
}


# general.file_type (llama.cpp's llama_ftype): what most of a file's weights were quantized to.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
}
