"""A synthetic model of about 100,000 modules, for the large-model figures.

`modelbrowse benchmarks/synthetic_model.py:Synthetic100k` opens it: a `ModuleList` of 20,000
small blocks of five modules each (100,002 modules with the root and the list), 5.9M parameters.
"""

from __future__ import annotations

from torch import nn

BLOCKS = 20_000


class Block(nn.Module):
    """Five modules: LayerNorm(8), Linear(8, 16), GELU, Linear(16, 8), Dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(16, 8)
        self.drop = nn.Dropout(0.1)


class Synthetic100k(nn.Module):
    """`layers`: 20,000 blocks, so the tree pages them (`layers[0:100]`, ...)."""

    def __init__(self, blocks: int = BLOCKS) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Block() for _ in range(blocks))
