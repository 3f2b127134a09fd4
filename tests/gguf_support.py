"""GGUF files for the tests, written with the `gguf` package's own writer and quantizers.

`gguf.quants` quantizes Q8_0 and Q4_0 but not the K-quants: Q4_K blocks are made here from
random bytes with sane scales (`q4_k_blocks`), which `gguf.quants.dequantize` reads as any
other Q4_K block; their values are whatever those bytes mean, and the reference for them is that
same `dequantize`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

HIDDEN = 256
VOCAB = 100
TOKENS = 1000


def q4_k_blocks(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Q4_K bytes for a (rows, cols) weight: random quants and scales, d = 0.01, dmin = 0.02."""
    blocks = rows * cols // 256
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(blocks, 144), dtype=np.uint8)
    data[:, 0:2] = np.full(blocks, 0.01, np.float16).view(np.uint8).reshape(blocks, 2)
    data[:, 2:4] = np.full(blocks, 0.02, np.float16).view(np.uint8).reshape(blocks, 2)
    return data.reshape(rows, cols // 256 * 144)


def q8_0(values: np.ndarray) -> np.ndarray:
    return quantize(values.astype(np.float32), GGMLQuantizationType.Q8_0)


def llama_tensors(layers: int = 2, seed: int = 0) -> dict[str, tuple[np.ndarray, str]]:
    """A tiny llama's tensors in GGUF's names and file order: name -> (data, GGML type)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, tuple[np.ndarray, str]] = {
        "token_embd.weight": (rng.standard_normal((VOCAB, HIDDEN)).astype(np.float16), "F16")
    }
    for layer in range(layers):
        prefix = f"blk.{layer}"
        tensors[f"{prefix}.attn_norm.weight"] = (np.ones(HIDDEN, np.float32), "F32")
        tensors[f"{prefix}.attn_q.weight"] = (q4_k_blocks(HIDDEN, HIDDEN, layer), "Q4_K")
        tensors[f"{prefix}.attn_k.weight"] = (q4_k_blocks(64, HIDDEN, 100 + layer), "Q4_K")
        up = rng.standard_normal((2 * HIDDEN, HIDDEN)) * 0.02
        tensors[f"{prefix}.ffn_up.weight"] = (q8_0(up), "Q8_0")
    tensors["output_norm.weight"] = (np.ones(HIDDEN, np.float32), "F32")
    tensors["output.weight"] = (q8_0(rng.standard_normal((VOCAB, HIDDEN))), "Q8_0")
    return tensors


def add_llama_metadata(writer: GGUFWriter, layers: int, name: str = "tiny llama") -> None:
    writer.add_name(name)
    writer.add_context_length(2048)
    writer.add_block_count(layers)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(2 * HIDDEN)
    writer.add_head_count(4)
    writer.add_head_count_kv(1)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(15)  # Q4_K_M
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"<tok{i}>" for i in range(TOKENS)])
    writer.add_token_scores([0.0] * TOKENS)


def write_gguf(
    path: Path,
    *,
    layers: int = 2,
    tensors: dict[str, tuple[np.ndarray, str]] | None = None,
    metadata: dict[str, object] | None = None,
    split_max_tensors: int = 0,
) -> Path:
    """A tiny llama GGUF (or a split set, with `split_max_tensors`); returns `path`."""
    writer = GGUFWriter(path, "llama", split_max_tensors=split_max_tensors)
    metadata = dict(metadata or {})
    name = metadata.pop("general.name", "tiny llama")
    assert isinstance(name, str)
    add_llama_metadata(writer, layers, name)
    for key, value in metadata.items():
        if isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, list):
            writer.add_array(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            assert isinstance(value, int)
            writer.add_uint32(key, value)
    for name, (data, type_name) in (tensors or llama_tensors(layers)).items():
        qtype = GGMLQuantizationType[type_name]
        if data.dtype == np.uint8:
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
        else:
            writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def reference_values(path: Path, name: str) -> np.ndarray:
    """A tensor's values as float32, dequantized by the gguf package's own reader."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    tensor = next(t for t in reader.tensors if t.name == name)
    return np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)


# --- files written by hand, for the hostile cases ----------------------------------------------


def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv_uint32(key: str, value: int) -> bytes:
    return gguf_string(key) + struct.pack("<II", 4, value)


def kv_string(key: str, value: str | bytes) -> bytes:
    return gguf_string(key) + struct.pack("<I", 8) + gguf_string(value)


def tensor_info(name: str | bytes, dims: tuple[int, ...], type_id: int, offset: int) -> bytes:
    """One tensor info: dimensions innermost first, as GGUF lists them."""
    return (
        gguf_string(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", type_id, offset)
    )


def raw_gguf(
    infos: list[bytes],
    kvs: list[bytes] | None = None,
    data: bytes = b"",
    *,
    version: int = 3,
    tensor_count: int | None = None,
    kv_count: int | None = None,
    alignment: int = 32,
) -> bytes:
    """A GGUF file from its parts: counts as given (or true), the data after padding."""
    kvs = kvs or []
    head = b"GGUF" + struct.pack(
        "<IQQ",
        version,
        len(infos) if tensor_count is None else tensor_count,
        len(kvs) if kv_count is None else kv_count,
    )
    head += b"".join(kvs) + b"".join(infos)
    return head + bytes(-len(head) % alignment) + data
