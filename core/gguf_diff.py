"""`--diff` between a GGUF file and the checkpoint it was converted from: the other side's keys
under GGUF's names.

llama.cpp's converter renames every tensor (`model.layers.12.self_attn.q_proj.weight` is
`blk.12.attn_q.weight`) with the `gguf` package's tensor name map for the architecture, and for
llama-family models reorders the rows of `q_proj` and `k_proj` for its rotary embedding. The
other side is given the same names and the same order here, so that each pair is compared
value by value (the GGUF side dequantized): the largest absolute and relative error of each
tensor is what quantizing it cost. Keys the map does not know keep their names and show as only
in one side.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modelbrowse.core.errors import SourceError
from modelbrowse.core.reading.gguf import read_gguf
from modelbrowse.core.sources.gguf_files import INSTALL_HINT

if TYPE_CHECKING:
    from modelbrowse.core.sources.base import Source

State = dict[str, torch.Tensor]
# Architectures whose converter permutes the rows of q and k (LlamaModel.permute).
_PERMUTED = frozenset({"llama"})


def as_gguf_names(a: Source, left: State, b: Source, right: State) -> tuple[State, State]:
    """The two states, the non-GGUF one under GGUF's names when exactly one side is GGUF."""
    a_file, b_file = _gguf_file(a), _gguf_file(b)
    if (a_file is None) == (b_file is None):
        return left, right
    if a_file is not None:
        return left, _renamed(right, a_file)
    assert b_file is not None
    return _renamed(left, b_file), right


def _gguf_file(source: Source) -> Path | None:
    if not any(label == "format" and value.startswith("GGUF") for label, value in source.info):
        return None
    files = source.files
    return files[0] if files else None


def _renamed(state: State, gguf_file: Path) -> State:
    metadata = read_gguf(gguf_file).metadata
    architecture = metadata.get("general.architecture")
    blocks = metadata.get(f"{architecture}.block_count")
    try:
        import gguf
    except ImportError:
        raise SourceError(f"--diff with a GGUF file maps names with gguf: {INSTALL_HINT}") from None
    found = [k for k, name in gguf.MODEL_ARCH_NAMES.items() if name == architecture]
    if not found or not isinstance(blocks, int):
        return state  # an architecture the package does not know: names as they are
    names = gguf.get_tensor_name_map(found[0], blocks)
    renamed: State = {}
    for key, tensor in state.items():
        new = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if new is None or new in renamed or new in state:
            new = key
        renamed[new] = _reordered(new, tensor, architecture, metadata)
    return renamed


def _reordered(key: str, tensor: torch.Tensor, architecture: Any, metadata: Any) -> torch.Tensor:
    """q and k with their rows in the converter's order (`LlamaModel.permute`)."""
    if architecture not in _PERMUTED or tensor.is_meta:
        return tensor
    heads = metadata.get(f"{architecture}.attention.head_count")
    kv_heads = metadata.get(f"{architecture}.attention.head_count_kv", heads)
    if key.endswith((".attn_q.weight", ".attn_q.bias")):
        groups = heads
    elif key.endswith((".attn_k.weight", ".attn_k.bias")):
        groups = kv_heads
    else:
        return tensor
    if not isinstance(groups, int) or groups <= 0 or tensor.shape[0] % (2 * groups):
        return tensor
    shape = tensor.shape
    split = tensor.reshape(groups, 2, shape[0] // groups // 2, *shape[1:])
    return split.swapaxes(1, 2).reshape(shape)
