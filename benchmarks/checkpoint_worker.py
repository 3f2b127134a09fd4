"""Checkpoint fixtures and one measured open per fresh process.

`python -m benchmarks.checkpoint_worker MODE PATH`, printing one JSON line:

- `write-llama DIR`: a Llama-7B-shaped Hugging Face folder (config.json, two safetensors shards,
  `model.safetensors.index.json`), written by hand as sparse files: the headers are real, the
  data region is a hole (`truncate`), so about 13.5 GB of bfloat16 costs a few KiB of disk and
  no memory. Reads as zeros.
- `write-pt PATH`: a 3 GiB state_dict `.pt` (12 float32 tensors of 256 MiB) with real data.
- `open PATH`: what the app does before its first screen:
  `AppOptions(source=PATH, keys_only=True).resolve()`, `source.build_structure()`,
  `NodeIndex(model)`; seconds of each step. A tiny checkpoint of the same kind is opened first
  (`first_open`), so that the modules the app imports lazily are loaded and the timer sees the
  open itself.
- `headers DIR`: the floor for a safetensors open: every shard's header (`safe_open`, `keys`,
  `get_slice(...).get_shape()`).
- `torch-load PATH`: the floor for a `.pt` open: `torch.load(mmap=True, weights_only=True)`.
- `structure PATH`: what the app does before torch is imported: the modules it has loaded when
  its load worker starts (`textual.app`, `modelbrowse.tui.app`), then the keys' tree read
  without torch (`read_structure`, `keys_only=True`, and its index); `peak_rss` is the most this
  process held until a tensor's values are needed. Imports neither torch nor safetensors, and
  fails if anything did.

Every measuring mode imports torch and safetensors first and reports `import_rss` (maximum RSS
after those imports: the import floor), `peak_rss` (maximum RSS at the end, `ru_maxrss`, which
counts file pages mapped in as well as allocations), and `rss_file` / `rss_anon` at the end.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# --- the Llama-7B layout ----------------------------------------------------------------------

LLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
LLAMA_SHARDS = 2
BF16_BYTES = 2
PT_TENSORS = 12
PT_TENSOR_BYTES = 256 << 20


def llama_shapes(config: dict[str, Any] = LLAMA_CONFIG) -> list[tuple[str, list[int]]]:
    """The keys and shapes of a Llama checkpoint (as `LlamaForCausalLM.state_dict()` names them)."""
    hidden = config["hidden_size"]
    inner = config["intermediate_size"]
    vocab = config["vocab_size"]
    shapes: list[tuple[str, list[int]]] = [("model.embed_tokens.weight", [vocab, hidden])]
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}"
        shapes += [(f"{layer}.self_attn.{p}_proj.weight", [hidden, hidden]) for p in "qkvo"]
        shapes += [
            (f"{layer}.mlp.gate_proj.weight", [inner, hidden]),
            (f"{layer}.mlp.up_proj.weight", [inner, hidden]),
            (f"{layer}.mlp.down_proj.weight", [hidden, inner]),
            (f"{layer}.input_layernorm.weight", [hidden]),
            (f"{layer}.post_attention_layernorm.weight", [hidden]),
        ]
    shapes += [("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])]
    return shapes


def _numel(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def write_sparse_safetensors(path: Path, tensors: list[tuple[str, list[int]]]) -> int:
    """A bfloat16 safetensors file whose data region is a hole; returns its logical size."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, shape in tensors:
        size = _numel(shape) * BF16_BYTES
        header[key] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    total = 8 + len(text) + offset
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        handle.truncate(total)
        os.fsync(handle.fileno())
    return total


def write_llama(folder: Path) -> dict[str, Any]:
    """The Llama-7B-shaped folder: config, two sparse shards and the index."""
    folder.mkdir(parents=True, exist_ok=True)
    shapes = llama_shapes()
    data_bytes = sum(_numel(s) * BF16_BYTES for _, s in shapes)
    # Split in key order at about equal sizes, as `save_pretrained(max_shard_size=...)` does.
    shards: list[list[tuple[str, list[int]]]] = [[] for _ in range(LLAMA_SHARDS)]
    done = 0
    for key, shape in shapes:
        which = min(done * LLAMA_SHARDS // data_bytes, LLAMA_SHARDS - 1)
        shards[which].append((key, shape))
        done += _numel(shape) * BF16_BYTES
    weight_map: dict[str, str] = {}
    files = []
    for number, shard in enumerate(shards, 1):
        name = f"model-{number:05d}-of-{LLAMA_SHARDS:05d}.safetensors"
        write_sparse_safetensors(folder / name, shard)
        weight_map.update((key, name) for key, _ in shard)
        files.append(folder / name)
    index = {"metadata": {"total_size": data_bytes}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (folder / "config.json").write_text(json.dumps(LLAMA_CONFIG, indent=2) + "\n")
    return {
        **sizes([*folder.iterdir()]),
        "tensors": len(shapes),
        "params": sum(_numel(s) for _, s in shapes),
    }


def write_pt(path: Path) -> dict[str, Any]:
    """A 3 GiB state_dict of float32 tensors with real (non-zero) data."""
    import torch

    state = {}
    for i in range(PT_TENSORS):
        tensor = torch.empty(PT_TENSOR_BYTES // 4, dtype=torch.float32)
        tensor.fill_(float(i + 1))
        state[f"blocks.{i}.weight"] = tensor.view(-1, 4096)
    with path.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())  # written back, so that the page cache can drop it
    return {**sizes([path]), "tensors": PT_TENSORS, "params": PT_TENSORS * PT_TENSOR_BYTES // 4}


def sizes(paths: list[Path]) -> dict[str, int]:
    """Logical bytes (what `ls -l` says) and bytes on disk (what `du` says) of the files."""
    stats = [p.stat() for p in paths if p.is_file()]
    return {
        "logical_bytes": sum(s.st_size for s in stats),
        "disk_bytes": sum(s.st_blocks * 512 for s in stats),
    }


# --- measuring --------------------------------------------------------------------------------


def peak_rss() -> int:
    """Maximum resident set size of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_parts() -> dict[str, int]:
    """Current anonymous and file-backed resident memory, in bytes."""
    parts = {"rss_anon": 0, "rss_file": 0}
    for line in Path("/proc/self/status").read_text().splitlines():
        for field, name in (("RssAnon:", "rss_anon"), ("RssFile:", "rss_file")):
            if line.startswith(field):
                parts[name] = int(line.split()[1]) * 1024
    return parts


def open_like_the_app(path: str) -> dict[str, Any]:
    """The app's steps before its first screen, each timed."""
    from modelbrowse.tui.options import AppOptions

    start = time.perf_counter()
    source = AppOptions(source=path, keys_only=True).resolve()
    resolved = time.perf_counter()
    model, is_meta = source.build_structure()
    built = time.perf_counter()
    from modelbrowse.core.index import NodeIndex

    index = NodeIndex(model)
    end = time.perf_counter()
    totals = index.totals()
    return {
        "seconds": end - start,
        "resolve": resolved - start,
        "build": built - resolved,
        "index": end - built,
        "params": totals.params,
        "is_meta": is_meta,
    }


def measure_headers(folder: str) -> dict[str, Any]:
    """Every shard's header: keys and shapes, as a minimal safetensors reader gets them."""
    from safetensors import safe_open

    start = time.perf_counter()
    shapes = {}
    for shard in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - a safe_open handle is not a dict
                shapes[key] = handle.get_slice(key).get_shape()
    end = time.perf_counter()
    return {"seconds": end - start, "params": sum(_numel(s) for s in shapes.values())}


def measure_torch_load(path: str) -> dict[str, Any]:
    """`torch.load` memory-mapped, weights only: the floor for opening a `.pt`."""
    import torch

    start = time.perf_counter()
    state = torch.load(path, mmap=True, weights_only=True, map_location="cpu")
    end = time.perf_counter()
    return {"seconds": end - start, "params": sum(t.numel() for t in state.values())}


def write_tiny_like(path: Path, folder: Path) -> str:
    """A one-tensor checkpoint of the same kind as `path` (a folder or a `.pt`), in `folder`."""
    import torch

    if path.is_dir():
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps({"model_type": "tiny"}))
        return str(folder)
    torch.save({"w": torch.zeros(2)}, folder / "tiny.pt")
    return str(folder / "tiny.pt")


def measure_open(path: str) -> dict[str, Any]:
    """The app's open, after a first open of a tiny checkpoint of the same kind in this process:
    the modules the app imports lazily are then loaded, and the timer sees only the open (the
    first-screen figures count the imports)."""
    with tempfile.TemporaryDirectory(prefix="modelbrowse-bench-tiny-") as tiny:
        warm = open_like_the_app(write_tiny_like(Path(path), Path(tiny)))
    figures = open_like_the_app(path)
    figures["first_open"] = warm["seconds"]
    return figures


def measure_structure(path: str) -> dict[str, Any]:
    """The tree before torch: the app's start-up imports, then the structure and its index."""
    import textual.app  # noqa: F401 - loaded before the app's load worker runs

    import modelbrowse.tui.app  # noqa: F401

    import_rss = peak_rss()
    from modelbrowse.core.structure import read_structure
    from modelbrowse.core.structure_index import preview_index

    start = time.perf_counter()
    structure = read_structure(path, keys_only=True)
    index = preview_index(structure) if structure is not None else None
    end = time.perf_counter()
    if index is None:
        raise SystemExit(f"{path}: no tree before torch (the app would wait for the full open)")
    if "torch" in sys.modules:
        raise SystemExit("torch was imported before a tensor's values were needed")
    return {"seconds": end - start, "params": index.totals().params, "import_rss": import_rss}


MEASURES = {"open": measure_open, "headers": measure_headers, "torch-load": measure_torch_load}


def main(mode: str, path: str) -> None:
    if mode == "write-llama":
        print(json.dumps(write_llama(Path(path))))
        return
    if mode == "write-pt":
        print(json.dumps(write_pt(Path(path))))
        return
    if mode == "structure":
        figures = measure_structure(path)
        figures.update(peak_rss=peak_rss(), **rss_parts())
        print(json.dumps(figures))
        return
    if mode not in MEASURES:
        modes = ", ".join([*MEASURES, "structure"])
        raise SystemExit(f"unknown mode {mode!r}: write-llama, write-pt, {modes}")
    import safetensors  # noqa: F401 - part of the import floor
    import torch  # noqa: F401

    import_rss = peak_rss()
    figures = MEASURES[mode](path)
    figures.update(import_rss=import_rss, peak_rss=peak_rss(), **rss_parts())
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
