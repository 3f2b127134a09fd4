"""One merged tensor: the base's values plus each LoRA update, computed as PEFT computes it.

PEFT's `merge_and_unload` adds `transpose(B @ A, fan_in_fan_out) * scaling` to the weight (an
embedding's update is `(B @ A).T * scaling`), in float32 where the adapter's weights are float32,
as they are by default. Here every sum is taken in float32 and cast back once, so float32 weights
come out bit for bit as PEFT's and narrower ones within their own rounding. A weight larger
than 256 MiB in float32 is done a block of rows at a time: no float32 copy of it is ever whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modelbrowse.core.merge.plan import MergePlan
from modelbrowse.core.sources.adapter_layout import LoraModule

# A weight of up to this many elements gets its update in one product, as PEFT computes it; a
# larger one (a 128K-token vocabulary's embeddings) a block of rows at a time, each under it.
BLOCK_ELEMENTS = 1 << 26
# Blocks start at multiples of this many rows: the matrix product's kernels tile rows so, and
# a block cut elsewhere may round differently from the whole product.
BLOCK_ROWS = 64


def merged_tensor(
    plan: MergePlan, key: str, base: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """The tensor the merge writes for `key` (base values `base`), in `dtype`."""
    copy = plan.replaced.get(key)
    if copy is not None:  # a whole copy loads first (PEFT's modules_to_save, base_layer)
        base = plan.adapter_tensors[copy].to(base.dtype)
    modules = plan.updates.get(key, [])
    biases = plan.bias_updates.get(key, [])
    if not modules and not biases:
        return base if base.dtype == dtype else base.to(dtype)
    if biases:
        summed = base.float()
        for module in biases:
            bias = plan.adapter_tensors[f"{module.path}.lora_B.bias"].float()
            summed = summed + bias * module.scaling
        return summed.to(dtype)
    out = torch.empty(base.shape, dtype=dtype)
    rows = base.shape[0] if base.dim() else 1
    step = rows
    if base.numel() > BLOCK_ELEMENTS:
        step = max(BLOCK_ROWS, BLOCK_ELEMENTS // max(1, base[0].numel()) // BLOCK_ROWS * BLOCK_ROWS)
    for start in range(0, rows, step):
        end = min(rows, start + step)
        block = slice(start, end) if step < rows else None
        values = base if block is None else base[block]
        total: torch.Tensor | None = None
        for module in modules:
            update = _update(plan, module, base.shape, block)
            # In place into the new update: W + d, as PEFT adds (addition commutes exactly).
            total = update.add_(values) if total is None else total.add_(update)
        assert total is not None
        if block is None:
            out.copy_(total)
        else:
            out[block].copy_(total)
    return out


def _update(
    plan: MergePlan, module: LoraModule, shape: torch.Size, block: slice | None
) -> torch.Tensor:
    """`transpose(B @ A, fan_in_fan_out) * scaling` (rows `block` of it), in float32."""
    a = plan.adapter_tensors[module.a_key].float()
    b = plan.adapter_tensors[module.b_key].float()
    scaling = module.scaling
    if len(module.a) == 4:  # a convolution, as PEFT's Conv2d.get_delta_weight
        if tuple(shape[2:4]) == (1, 1):
            product = (b.squeeze(3).squeeze(2) @ a.squeeze(3).squeeze(2)).unsqueeze(2).unsqueeze(3)
            update = product.mul_(scaling)
        else:
            update = F.conv2d(a.transpose(0, 1), b).transpose(0, 1).mul_(scaling)
        return update if block is None else update[block]
    if module.embedding or plan.fan_in_fan_out:
        # The weight's rows are A's columns: (B @ A[:, rows]).T.
        columns = a if block is None else a[:, block]
        return (b @ columns).T.mul_(scaling)
    rows = b if block is None else b[block]
    return (rows @ a).mul_(scaling)
