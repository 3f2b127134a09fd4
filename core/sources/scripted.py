"""A TorchScript archive as a module tree built from its saved state, its code never loaded.

`core.reading.torchscript` reads the archive as data; here each scripted module becomes a
`ScriptedModule` showing its scripted class name, with its parameters and buffers mapped from
the archive, so the tree can be browsed and its weights written as a state_dict.
"""

from __future__ import annotations

import torch
from torch import nn

from modelbrowse.core.reading.records import TensorRecord
from modelbrowse.core.reading.torchscript import ScriptedModuleRecord
from modelbrowse.core.sources.tensor_mapping import FileMaps

NOT_RUN = (
    "a TorchScript archive is read here as data, and its scripted code is never run "
    "(open its written weights with --arch to run the model)"
)


class ScriptedModule(nn.Module):
    """One module of a TorchScript archive, shown as the class it was scripted from."""

    def __init__(self, original_name: str, qualified_name: str) -> None:
        super().__init__()
        self.original_name = original_name
        self.qualified_name = qualified_name

    def forward(self, *args: object) -> None:
        raise TypeError(NOT_RUN)

    def extra_repr(self) -> str:
        return f"original_name={self.original_name}"


def scripted_tree(root: ScriptedModuleRecord, device: str = "cpu") -> ScriptedModule:
    """The records as modules; a tensor saved once under two names stays one object (a tie)."""
    maps = FileMaps()
    made: dict[TensorRecord, nn.Parameter] = {}
    buffers: dict[TensorRecord, torch.Tensor] = {}

    def build(record: ScriptedModuleRecord) -> ScriptedModule:
        module = ScriptedModule(record.name, record.qualname)
        module.training = record.training
        for name, tensor in record.parameters.items():
            found = made.get(tensor)
            if found is None:
                found = nn.Parameter(maps.tensor(tensor, device), tensor.requires_grad)
                made[tensor] = found
            # Written into the dicts directly, as the weights tree does: any saved name works.
            module._parameters[name] = found
        for name, tensor in record.buffers.items():
            value = buffers.get(tensor)
            if value is None:
                value = buffers[tensor] = maps.tensor(tensor, device)
            module._buffers[name] = value
        for name, child in record.children.items():
            module._modules[name] = build(child)
        return module

    return build(root)
