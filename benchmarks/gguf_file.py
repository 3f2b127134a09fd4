"""A GGUF file: `modelbrowse FILE.gguf --print` against reading its header with `gguf`'s reader.

The file (written once per run with `gguf.GGUFWriter`: real metadata and tensor infos, the data
a hole, so it takes seconds and no disk) is shaped like a quantized llama of 32 layers (hidden
1024, 16 heads, 4 key-value heads, feed-forward 3072) with a Llama 3 tokenizer: 291 tensors, 649M
parameters, 499 MB, a Q8_0 embedding, Q4_K projections, Q6_K `ffn_down` and output; its header
holds 128,256 tokens and 280,147 merges (8.6 MB), the long arrays a reader has to walk.
Each sample is a fresh process, timed from start to exit; its peak RSS comes from `wait4`. The
baseline is a process that opens the file with `gguf.GGUFReader` (the header and tensor infos,
as `gguf-dump` does before it prints) and lists the tensors' names. Figures:

- `gguf_print`: `--print` (metadata, weights by type and tree, read without torch), in seconds;
  target 0.3 s, with the ratio to the `gguf` process;
- `gguf_print_peak_mib`: the peak RSS of that `--print` (worst run); target 150 MiB.
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks import Context, Result, Sampler, SampleSet, Target, figure, progress, ratio_result
from benchmarks.before_torch import MiBTarget
from benchmarks.fixtures import FIXTURES
from benchmarks.many_keys import measure_process
from benchmarks.terminal import COMMAND

FILE_NAME = "llama-q4_k_m.gguf"
TARGET_S = 0.3
PEAK_LIMIT_MIB = 150.0
LAYERS, HIDDEN, KV, FFN, VOCAB, MERGES = 32, 1024, 256, 3072, 128_256, 280_147
GGUF_READER = (
    "import sys\n"
    "from gguf import GGUFReader\n"
    "reader = GGUFReader(sys.argv[1])\n"
    "names = [t.name for t in reader.tensors]\n"
)
_made: dict[str, Path] = {}


def write_gguf_file(path: Path) -> None:
    """The llama-shaped GGUF: metadata and tensor infos written, the data left a hole."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

    writer = GGUFWriter(path, "llama")
    writer.add_name("llama-shaped benchmark model")
    writer.add_context_length(131_072)
    writer.add_block_count(LAYERS)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(16)
    writer.add_head_count_kv(4)
    writer.add_rope_freq_base(500_000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(15)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list([f"tok{i:06d}" for i in range(VOCAB)])
    writer.add_token_types([1] * VOCAB)
    writer.add_token_merges([f"m{i} n{i}" for i in range(MERGES)])
    writer.add_chat_template("{% for message in messages %}{{ message['content'] }}{% endfor %}")

    def info(name: str, shape: tuple[int, ...], type_name: str) -> None:
        qtype = GGMLQuantizationType[type_name]
        block, size = GGML_QUANT_SIZES[qtype]
        count = 1
        for dim in shape:
            count *= dim
        nbytes = count // block * size
        writer.add_tensor_info(name, shape, None, nbytes, raw_dtype=qtype)  # type: ignore[arg-type]

    info("token_embd.weight", (VOCAB, HIDDEN), "Q8_0")
    for layer in range(LAYERS):
        blk = f"blk.{layer}"
        info(f"{blk}.attn_norm.weight", (HIDDEN,), "F32")
        info(f"{blk}.attn_q.weight", (HIDDEN, HIDDEN), "Q4_K")
        info(f"{blk}.attn_k.weight", (KV, HIDDEN), "Q4_K")
        info(f"{blk}.attn_v.weight", (KV, HIDDEN), "Q4_K")
        info(f"{blk}.attn_output.weight", (HIDDEN, HIDDEN), "Q4_K")
        info(f"{blk}.ffn_norm.weight", (HIDDEN,), "F32")
        info(f"{blk}.ffn_gate.weight", (FFN, HIDDEN), "Q4_K")
        info(f"{blk}.ffn_up.weight", (FFN, HIDDEN), "Q4_K")
        info(f"{blk}.ffn_down.weight", (HIDDEN, FFN), "Q6_K")
    info("output_norm.weight", (HIDDEN,), "F32")
    info("output.weight", (VOCAB, HIDDEN), "Q6_K")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    assert writer.fout is not None
    handle = writer.fout[0]
    header = handle.tell()
    pad = writer.data_alignment
    data = sum(-(-t.nbytes // pad) * pad for t in writer.tensors[0].values())
    handle.truncate(-(-header // pad) * pad + data)
    writer.close()


def gguf_file() -> Path:
    if FILE_NAME not in _made:
        path = FIXTURES.root / FILE_NAME
        progress(f"[gguf] writing {path}")
        write_gguf_file(path)
        _made[FILE_NAME] = path
    return _made[FILE_NAME]


def process_sampler(key: str) -> Sampler:
    """`modelbrowse FILE --print`, or (key `gguf`) the GGUFReader process."""

    def measure(ctx: Context) -> dict[str, float]:
        path = str(gguf_file())
        if key == "gguf":
            argv = [sys.executable, "-c", GGUF_READER, path]
        else:
            argv = [str(COMMAND), path, "--print"]
        seconds, peak = measure_process(argv, ctx.timeout)
        return {key: seconds, f"{key}.peak_mib": peak}

    return Sampler(key, measure)


# Full runs only: the GGUFReader process takes 20 s on this file (each of 408K strings is a field).
GGUF_PRINT = SampleSet(
    "gguf-print", samplers=(process_sampler("print"), process_sampler("gguf")), runs=3, quick_runs=1
)


@figure("gguf_print", quick=False)
def gguf_print(ctx: Context) -> Result:
    """`--print` of a 499 MB GGUF file, against opening it with gguf's GGUFReader."""
    return ratio_result(
        ctx,
        GGUF_PRINT,
        name="gguf_print",
        description="`modelbrowse llama-q4_k_m.gguf --print` (291 tensors, 128K-token "
        "vocabulary), a fresh process / one that opens it with gguf.GGUFReader",
        value_key="print",
        baseline_key="gguf",
        baseline_name="a process that opens the file with gguf.GGUFReader",
        target=Target(TARGET_S, kind="value"),
    )


@figure("gguf_print_peak_mib", quick=False)
def gguf_print_peak(ctx: Context) -> Result:
    """Peak RSS of that `--print`, within 150 MiB."""
    result = ratio_result(
        ctx,
        GGUF_PRINT,
        name="gguf_print_peak_mib",
        description="peak RSS of `--print` of the GGUF file (worst run) / that of the "
        "GGUFReader process",
        value_key="print.peak_mib",
        baseline_key="gguf.peak_mib",
        baseline_name="a process that opens the file with gguf.GGUFReader (MiB)",
        target=MiBTarget(PEAK_LIMIT_MIB),
    )
    result.unit = "MiB"
    if result.error is None:
        result.value = max(result.samples["print.peak_mib"])
    return result


if __name__ == "__main__":  # `python -m benchmarks.gguf_file PATH`: write the file only
    write_gguf_file(Path(sys.argv[1]))
