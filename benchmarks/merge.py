"""Merging a LoRA adapter out of core: `modelbrowse BASE --merge ADAPTER --output OUT`.

The base is a Llama-shaped Hugging Face folder the benchmark writes into a temporary folder:
bfloat16, hidden size 4096, 12 layers and a 32,000-token vocabulary (5.0 GiB in 6 shards of at
most 1 GiB, with an index and config.json), its values real bytes (a random block repeated).
The adapter is a PEFT folder of rank 16 on every linear weight of every layer (q, k, v, o,
gate, up, down: 84 of the 85 linear weights; lm_head is left out), in float32, B not zero.
Each sample is a fresh process; its peak RSS comes from `wait4`. Figures:

- `merge_5gib_folder_peak_mib`: the peak RSS of the merge into a Hugging Face folder, against
  the base's largest shard; target: within 1 GiB of it;
- `merge_5gib_file_peak_mib`: the same, into one `.safetensors` file;
- `merge_5gib_vs_whole_model`: the folder merge's peak against the base's whole size, the
  least that loading the model to merge it (PEFT's `merge_and_unload`) holds (informational).

It needs 15 GiB of disk under `$TMPDIR` (the base and one output at a time) and is left out
of `--quick`; it runs in full runs and with `--only`.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from benchmarks import (
    Context,
    HeadroomTarget,
    Result,
    Sampler,
    SampleSet,
    Target,
    figure,
    memory_result,
    progress,
)
from benchmarks.fixtures import FIXTURES, MIB
from benchmarks.many_keys import measure_process
from benchmarks.terminal import COMMAND

HIDDEN = 4096
INTERMEDIATE = 11008
LAYERS = 12
VOCAB = 32000
RANK = 16
SHARD_BYTES = 1 << 30
PATTERN_BYTES = 64 << 20
HEADROOM_MIB = 1024.0
_made: dict[str, tuple[Path, Path, int, int]] = {}


def _shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for n in range(LAYERS):
        layer = f"model.layers.{n}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{layer}.self_attn.{name}.weight"] = (HIDDEN, HIDDEN)
        shapes[f"{layer}.mlp.gate_proj.weight"] = (INTERMEDIATE, HIDDEN)
        shapes[f"{layer}.mlp.up_proj.weight"] = (INTERMEDIATE, HIDDEN)
        shapes[f"{layer}.mlp.down_proj.weight"] = (HIDDEN, INTERMEDIATE)
        shapes[f"{layer}.input_layernorm.weight"] = (HIDDEN,)
        shapes[f"{layer}.post_attention_layernorm.weight"] = (HIDDEN,)
    shapes["model.norm.weight"] = (HIDDEN,)
    shapes["lm_head.weight"] = (VOCAB, HIDDEN)
    return shapes


def _write_shard(path: Path, shapes: dict[str, tuple[int, ...]], pattern: bytes) -> int:
    """A bfloat16 safetensors shard whose tensors' bytes are `pattern` repeated."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, shape in shapes.items():
        size = 2
        for n in shape:
            size *= n
        header[key] = {
            "dtype": "BF16",
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text)
        left = offset
        while left:
            chunk = pattern[: min(left, len(pattern))]
            handle.write(chunk)
            left -= len(chunk)
    return offset


def write_base(folder: Path) -> tuple[int, int]:
    """The Llama-shaped folder; returns (its largest shard's bytes, all shards' bytes)."""
    import torch

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    values = (torch.randn(PATTERN_BYTES // 2) * 0.02).to(torch.bfloat16)
    pattern = values.view(torch.uint8).numpy().tobytes()
    groups: list[dict[str, tuple[int, ...]]] = [{}]
    size = 0
    for key, shape in _shapes().items():
        nbytes = 2
        for n in shape:
            nbytes *= n
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append({})
            size = 0
        groups[-1][key] = shape
        size += nbytes
    weight_map: dict[str, str] = {}
    sizes = []
    for number, group in enumerate(groups, 1):
        name = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        progress(f"[merge] writing {folder / name}")
        sizes.append(_write_shard(folder / name, group, pattern))
        weight_map.update(dict.fromkeys(group, name))
    index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "vocab_size": VOCAB,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return max(sizes), sum(sizes)


def write_adapter(folder: Path) -> None:
    """Rank 16 on every linear weight of every layer, float32, B not zero."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    torch.manual_seed(1)
    tensors = {}
    for key, shape in _shapes().items():
        if ".layers." not in key or len(shape) != 2:
            continue
        module = "base_model.model." + key.removesuffix(".weight")
        tensors[f"{module}.lora_A.weight"] = torch.randn(RANK, shape[1]) * 0.01
        tensors[f"{module}.lora_B.weight"] = torch.randn(shape[0], RANK) * 0.01
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": RANK,
        "lora_alpha": 32,
        "target_modules": [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        "fan_in_fan_out": False,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))


def merge_inputs() -> tuple[Path, Path, int, int]:
    if "inputs" not in _made:
        root = FIXTURES.root / "merge"
        largest, total = write_base(root / "base")
        write_adapter(root / "adapter")
        _made["inputs"] = (root / "base", root / "adapter", largest, total)
    return _made["inputs"]


def merge_sampler(key: str, output_name: str) -> Sampler:
    def measure(ctx: Context) -> dict[str, float]:
        base, adapter, largest, total = merge_inputs()
        output = base.parent / output_name
        argv = [str(COMMAND), str(base), "--merge", str(adapter), "--output", str(output)]
        try:
            seconds, peak = measure_process(argv, ctx.timeout * 20)
        finally:
            if output.is_dir():
                shutil.rmtree(output, ignore_errors=True)
            else:
                output.unlink(missing_ok=True)
        return {
            key: seconds,
            f"{key}.peak_mib": peak,
            "largest_shard_mib": largest / MIB,
            "model_mib": total / MIB,
        }

    return Sampler(key, measure)


MERGE = SampleSet(
    "merge-5gib",
    samplers=(merge_sampler("folder", "merged"), merge_sampler("file", "merged.safetensors")),
    runs=1,
    quick_runs=1,
)


def _peak(ctx: Context, name: str, key: str, what: str) -> Result:
    return memory_result(
        ctx,
        MERGE,
        name=name,
        description=f"peak RSS of `--merge` of a rank-16 adapter into a 5.0 GiB bf16 Llama-shaped "
        f"folder (6 shards), written to {what} / the base's largest shard",
        value_key=f"{key}.peak_mib",
        baseline_key="largest_shard_mib",
        baseline_name="the base's largest shard (MiB)",
        target=HeadroomTarget(HEADROOM_MIB),
    )


@figure("merge_5gib_folder_peak_mib", quick=False)
def merge_folder_peak(ctx: Context) -> Result:
    """Peak RSS of a merge into a Hugging Face folder, against the largest input shard."""
    return _peak(ctx, "merge_5gib_folder_peak_mib", "folder", "a Hugging Face folder")


@figure("merge_5gib_file_peak_mib", quick=False)
def merge_file_peak(ctx: Context) -> Result:
    """Peak RSS of a merge into one safetensors file, against the largest input shard."""
    return _peak(ctx, "merge_5gib_file_peak_mib", "file", "one .safetensors file")


@figure("merge_5gib_vs_whole_model", quick=False)
def merge_vs_model(ctx: Context) -> Result:
    """The folder merge's peak RSS against the whole model's size (informational)."""
    return memory_result(
        ctx,
        MERGE,
        name="merge_5gib_vs_whole_model",
        description="peak RSS of the folder merge / the whole base's size, the least that "
        "loading it to merge (merge_and_unload) holds",
        value_key="folder.peak_mib",
        baseline_key="model_mib",
        baseline_name="the base's size (MiB)",
        target=Target(0.5, informational=True),
    )


if __name__ == "__main__":  # `python -m benchmarks.merge FOLDER`: write the inputs only
    root = Path(sys.argv[1])
    print(write_base(root / "base"))
    write_adapter(root / "adapter")
