"""The GGUF reader: files the gguf package writes read as its own reader reads them, and hostile
files refused in one line, before anything is allocated."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGUFReader, GGUFValueType, GGUFWriter

from modelbrowse.core.reading import Limits, ReadError
from modelbrowse.core.reading.file_kinds import FileKind, sniff
from modelbrowse.core.reading.ggml_types import GGML_TYPES
from modelbrowse.core.reading.gguf import GGUFArray, read_gguf
from modelbrowse.core.reading.gguf_metadata import format_value, gguf_rows
from tests.gguf_support import (
    HIDDEN,
    TOKENS,
    gguf_string,
    kv_string,
    kv_uint32,
    raw_gguf,
    tensor_info,
    write_gguf,
)


@pytest.fixture
def llama(tmp_path: Path) -> Path:
    return write_gguf(tmp_path / "tiny.gguf")


def test_every_tensor_lies_where_the_gguf_package_finds_it(llama: Path) -> None:
    contents = read_gguf(llama)
    reference = GGUFReader(llama)
    assert list(contents.tensors) == [t.name for t in reference.tensors]  # file order
    for tensor in reference.tensors:
        record = contents.tensors[tensor.name]
        assert record.storage.start == tensor.data_offset
        assert record.storage.nbytes == tensor.n_bytes
        assert contents.types[tensor.name] == tensor.tensor_type.name
        logical = tuple(reversed(tensor.shape.tolist()))  # outermost first, as torch
        quantization = record.quantization
        if quantization is None:
            assert record.shape == logical
        else:
            assert quantization.logical_shape == logical
            assert quantization.numel == tensor.n_elements
            assert record.shape == (tensor.n_bytes,) and record.dtype == "uint8"


def test_a_q4_k_weight_is_its_logical_shape_and_bits(llama: Path) -> None:
    record = read_gguf(llama).tensors["blk.0.attn_k.weight"]
    assert record.quantization is not None
    assert record.quantization.logical_shape == (64, HIDDEN)
    assert record.quantization.scheme == "Q4_K"
    assert record.quantization.bits == 4.5
    assert record.quantization.group_size == 256


def test_the_type_table_is_ggmls() -> None:
    for type_id, ggml in GGML_TYPES.items():
        known = {t.value: sizes for t, sizes in GGML_QUANT_SIZES.items()}
        if type_id in known:
            assert (ggml.block_size, ggml.type_size) == known[type_id], ggml.name


def test_the_metadata_keeps_counts_not_vocabularies(llama: Path) -> None:
    metadata = read_gguf(llama).metadata
    assert metadata["general.architecture"] == "llama"
    assert metadata["llama.context_length"] == 2048
    tokens = metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray)
    assert tokens.count == TOKENS and tokens.head[:2] == ("<tok0>", "<tok1>")
    assert len(tokens.head) == 8
    rows = dict(gguf_rows(read_gguf(llama)))
    assert rows["tokenizer"] == "llama, vocabulary of 1,000 tokens"
    assert rows["layers"] == "2" and rows["context length"] == "2048"
    assert rows["file type"] == "Q4_K_M"
    assert rows["weights Q4_K"] == "4 tensors, 163.8K params, 90.0 KiB (4.5 bits per weight)"
    assert rows["tokenizer.ggml.tokens"].startswith("[1,000 strings: '<tok0>', '<tok1>',")
    assert rows["llama.attention.layer_norm_rms_epsilon"] == "1e-05"


def test_every_value_type_and_nested_arrays(tmp_path: Path) -> None:
    path = tmp_path / "values.gguf"
    writer = GGUFWriter(path, "llama")
    values = {
        "t.u8": (255, GGUFValueType.UINT8),
        "t.i8": (-128, GGUFValueType.INT8),
        "t.u16": (65535, GGUFValueType.UINT16),
        "t.i16": (-32768, GGUFValueType.INT16),
        "t.u32": (2**32 - 1, GGUFValueType.UINT32),
        "t.i32": (-(2**31), GGUFValueType.INT32),
        "t.f32": (0.5, GGUFValueType.FLOAT32),
        "t.bool": (True, GGUFValueType.BOOL),
        "t.str": ("héllo", GGUFValueType.STRING),
        "t.u64": (2**64 - 1, GGUFValueType.UINT64),
        "t.i64": (-(2**63), GGUFValueType.INT64),
        "t.f64": (0.1, GGUFValueType.FLOAT64),
    }
    for key, (value, vtype) in values.items():
        writer.add_key_value(key, value, vtype)
    writer.add_array("t.nested", [[1, 2], [3, 4, 5], [6]])
    writer.add_array("t.strings", ["a", "b"])
    writer.add_tensor("w", np.ones((2, 3), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    metadata = read_gguf(path).metadata
    for key, (value, _) in values.items():
        assert metadata[key] == value, key
    assert format_value(metadata["t.nested"]) == "[[1, 2], [3, 4, 5], [6]]"
    assert format_value(metadata["t.strings"]) == "['a', 'b']"
    assert format_value(metadata["t.bool"]) == "true"
    assert read_gguf(path).tensors["w"].shape == (2, 3)


def test_a_custom_alignment_moves_the_data(tmp_path: Path) -> None:
    path = tmp_path / "aligned.gguf"
    writer = GGUFWriter(path, "llama")
    writer.data_alignment = 256
    writer.add_custom_alignment(256)
    writer.add_tensor("a", np.ones(3, np.float32))
    writer.add_tensor("b", np.ones(5, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    contents = read_gguf(path)
    assert contents.alignment == 256
    starts = {t.name: t.data_offset for t in GGUFReader(path).tensors}
    assert {k: r.storage.start for k, r in contents.tensors.items()} == starts
    assert all(start % 256 == 0 for start in starts.values())


def test_a_split_set_is_read_whole_from_any_part(tmp_path: Path) -> None:
    write_gguf(tmp_path / "tiny.gguf", split_max_tensors=4)
    parts = sorted(tmp_path.glob("tiny-*-of-*.gguf"))
    assert len(parts) == 3
    whole = read_gguf(parts[1])
    assert whole.files == parts
    assert list(whole.tensors) == list(read_gguf(parts[0]).tensors)
    assert len(whole.tensors) == 11
    assert whole.metadata["llama.block_count"] == 2  # from the first part
    assert {Path(r.storage.file) for r in whole.tensors.values()} == set(parts)
    parts[2].unlink()
    with pytest.raises(
        ReadError,
        match=r"split GGUF set of 3 files, and 1 are missing beside it: tiny-00003-of-00003\.gguf",
    ):
        read_gguf(parts[0])


def test_a_gguf_file_is_told_by_its_magic(llama: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "weights.bin"
    disguised.write_bytes(llama.read_bytes())
    assert sniff(disguised) is FileKind.GGUF


# --- hostile files -------------------------------------------------------------------------------

F32 = 0
Q4_K = 12


def refused(tmp_path: Path, data: bytes, limits: Limits | None = None) -> str:
    """The one-line message a hostile file gets, read in well under a second."""
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    start = time.perf_counter()
    with pytest.raises(ReadError) as caught:
        read_gguf(path, limits or Limits())
    assert time.perf_counter() - start < 1.0
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message
    assert message.startswith(str(path))
    return message


def one_f32(name: str | bytes = "w", dims: tuple[int, ...] = (4,), offset: int = 0) -> bytes:
    return tensor_info(name, dims, F32, offset)


HOSTILE: dict[str, tuple[bytes, str]] = {
    "too short": (b"GGUF\x03\x00", "shorter than a GGUF header"),
    "version 1": (raw_gguf([], version=1), "GGUF version 1, an early format"),
    "a future version": (
        raw_gguf([], version=9),
        "GGUF version 9; this app reads versions 2 and 3",
    ),
    "big-endian": (raw_gguf([], version=3 << 24), "big-endian GGUF file"),
    "huge tensor count": (
        raw_gguf([], tensor_count=2**63),
        "declares 9,223,372,036,854,775,808 tensors",
    ),
    "lying tensor count": (raw_gguf([], tensor_count=50_000), "more than its 32 bytes can hold"),
    "huge entry count": (raw_gguf([], kv_count=2**40), "metadata entries; at most 1,000,000"),
    "huge key length": (
        raw_gguf([], [struct.pack("<Q", 2**63) + b"k"]),
        "holds a name of 9,223,372,036,854,775,808 bytes",
    ),
    "huge string value": (
        raw_gguf([], [gguf_string("k") + struct.pack("<IQ", 8, 2**62)]),
        "ends inside its metadata (truncated?)",
    ),
    "huge array": (
        raw_gguf([], [gguf_string("k") + struct.pack("<IIQ", 9, 8, 2**61)]),
        "'k' declares 2,305,843,009,213,693,952 items",
    ),
    "deep nesting": (
        raw_gguf([], [gguf_string("deep") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 300]),
        "'deep' nests arrays more than 200 levels deep",
    ),
    "unknown value type": (
        raw_gguf([], [gguf_string("k") + struct.pack("<I", 77)]),
        "value type 77",
    ),
    "duplicate key": (raw_gguf([], [kv_uint32("k", 1), kv_uint32("k", 2)]), "'k' appears twice"),
    "non-UTF-8 key": (
        raw_gguf([], [kv_uint32("k\xff", 1).replace(b"k\xc3\xbf", b"k\xff\x00")]),
        "is not UTF-8",
    ),
    "alignment not a power of two": (
        raw_gguf([], [kv_uint32("general.alignment", 48)]),
        "general.alignment is 48, not a power of two",
    ),
    "alignment zero": (raw_gguf([], [kv_uint32("general.alignment", 0)]), "general.alignment is 0"),
    "alignment of the wrong type": (
        raw_gguf([], [kv_string("general.alignment", "32")]),
        "general.alignment is not a uint32",
    ),
    "five dimensions": (
        raw_gguf([one_f32(dims=(1, 1, 1, 1, 1))], data=bytes(4)),
        "has 5 dimensions",
    ),
    "unknown tensor type": (raw_gguf([tensor_info("w", (4,), 99, 0)], data=bytes(16)), "type 99"),
    "rows not whole blocks": (
        raw_gguf([tensor_info("w", (100, 2), Q4_K, 0)], data=bytes(288)),
        "'w' is Q4_K but its rows of 100 are not whole blocks of 256",
    ),
    "unaligned offset": (
        raw_gguf([one_f32(offset=4)], data=bytes(64)),
        "starts at 4, not a multiple",
    ),
    "data past the end": (
        raw_gguf([one_f32(dims=(1000,))], data=bytes(16)),
        "needs 3,984 bytes more",
    ),
    "huge dimensions": (
        raw_gguf([one_f32(dims=(2**40, 2**40))], data=bytes(16)),
        "too many to be real",
    ),
    "overlapping tensors": (
        raw_gguf([one_f32("a", (16,), 0), one_f32("b", (4,), 32)], data=bytes(64)),
        "the data of 'b' overlaps that of 'a'",
    ),
    "duplicate tensor": (
        raw_gguf([one_f32("w"), one_f32("w", offset=32)], data=bytes(64)),
        "'w' appears twice",
    ),
    "non-UTF-8 tensor name": (
        raw_gguf([one_f32(b"blk.\xff.w")], data=bytes(16)),
        r"'blk.\\xff.w' is not UTF-8",
    ),
    "control characters in a name": (
        raw_gguf([one_f32("w\x1b[2J", dims=(2**40, 2**40))], data=bytes(16)),
        r"'w\\x1b[2J'",
    ),
    "truncated tensor infos": (raw_gguf([one_f32()])[:40], "truncated"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_file_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    data, expected = HOSTILE[case]
    assert expected in refused(tmp_path, data)


def test_every_cut_of_a_real_file_is_refused(llama: Path, tmp_path: Path) -> None:
    data = llama.read_bytes()
    header_end = GGUFReader(llama).data_offset
    for cut in sorted(
        {*range(0, 200, 7), *range(header_end - 64, header_end + 64, 5), len(data) - 1}
    ):
        message = refused(tmp_path, data[:cut])
        assert "truncated" in message or "shorter than a GGUF header" in message, (cut, message)


def test_a_header_longer_than_the_limit_is_refused(llama: Path, tmp_path: Path) -> None:
    message = refused(tmp_path, llama.read_bytes(), Limits(header_bytes=4096))
    assert "its header is longer than the 4,096 bytes a header may take" in message


def test_control_characters_in_metadata_are_kept_for_the_screen_to_escape(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "ctl.gguf", metadata={"general.name": "evil\x1b]0;pwn\x07\nname"})
    rows = dict(gguf_rows(read_gguf(path)))
    assert rows["name"] == "evil\x1b]0;pwn\x07\nname"  # escaped where shown: see the CLI test
