"""A block-quantized weight as a tensor: its logical shape and count, its packed bytes kept.

A GGUF Q4_K weight of 4096x4096 is 9.4 MB of blocks, each 256 weights with their scales. The
tree, the totals and the detail pane read it as what it stands for: shape (4096, 4096), 16.8M
parameters, float32 values once dequantized, and as stored: `element_size()` is the bytes per
weight as stored (0.5625 for Q4_K), so `numel() * element_size()` is the size it takes.

Its values exist only dequantized, block by block, on the CPU (`blocks`, for statistics); any
other operation is refused in one line: the app shows such a weight, it does not compute with
it or write it back without re-quantizing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from modelbrowse.core.errors import ModelBrowseError
from modelbrowse.core.reading.quantization import Quantization

# Packed blocks (n, bytes per block) as uint8 -> their values (n, weights per block) as float32.
Decode = Callable[[torch.Tensor], torch.Tensor]


class QuantizedValuesError(ModelBrowseError):
    """An operation needs a quantized weight's values as a plain tensor."""


class QuantizedTensor(torch.Tensor):
    """A weight stored in blocks of `quantization.group_size` weights (`packed`, uint8, one
    dimension, the blocks in row-major order of the logical shape)."""

    packed: torch.Tensor
    quantization: Quantization
    # Made on first use (it may import an optional package); None until then.
    _decoder: Callable[[], Decode | str]
    _decode: Decode | str | None

    @staticmethod
    def __new__(
        cls, packed: torch.Tensor, quantization: Quantization, decoder: Callable[[], Decode | str]
    ) -> QuantizedTensor:
        tensor = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls, quantization.logical_shape, dtype=torch.float32, device=packed.device
        )
        assert isinstance(tensor, QuantizedTensor)
        tensor.packed = packed
        tensor.quantization = quantization
        tensor._decoder = decoder
        tensor._decode = None
        return tensor

    def __init__(self, *args: object) -> None:
        pass  # everything is set in __new__

    def __repr__(self, *, tensor_contents: object = None) -> str:  # type: ignore[override]
        shape = tuple(self.shape)
        return f"QuantizedTensor({self.quantization.scheme}, shape={shape})"

    def element_size(self) -> float:  # type: ignore[override]
        """Bytes per weight as stored: a fraction, so that numel() times it is the size."""
        numel = self.numel()
        return self.packed.numel() / numel if numel else 0.0

    @property
    def block_size(self) -> int:
        return self.quantization.group_size or 1

    @property
    def block_bytes(self) -> int:
        blocks = self.numel() // self.block_size
        return self.packed.numel() // blocks if blocks else 0

    def unavailable(self) -> str | None:
        """Why the values cannot be had (a scheme without a dequantizer, a missing extra)."""
        decode = self._decoder_once()
        return decode if isinstance(decode, str) else None

    def blocks(self, first: int, stop: int) -> torch.Tensor:
        """The values of blocks `first` to `stop` (exclusive), flat, float32 on the CPU."""
        return self.values_of(torch.arange(first, stop))

    def values_of(self, blocks: torch.Tensor) -> torch.Tensor:
        """The values of the blocks at the indices `blocks`, in that order, flat."""
        decode = self._decoder_once()
        if isinstance(decode, str):
            raise QuantizedValuesError(decode)
        width = self.block_bytes
        packed = self.packed.view(-1, width)
        chosen = packed.index_select(0, blocks) if blocks.numel() else packed[:0]
        return decode(chosen).reshape(-1)

    def _decoder_once(self) -> Decode | str:
        if self._decode is None:
            self._decode = self._decoder()
        return self._decode

    # torch declares the disabled default as a plain function; a subclass's is a classmethod.
    @classmethod
    def __torch_dispatch__(  # type: ignore[override]
        cls,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func in (torch.ops.aten.detach.default, torch.ops.aten.alias.default):
            source = args[0]
            copy = QuantizedTensor(source.packed, source.quantization, source._decoder)
            copy._decode = source._decode
            return copy
        scheme = next(
            (a.quantization.scheme for a in args if isinstance(a, QuantizedTensor)), "quantized"
        )
        raise QuantizedValuesError(
            f"{scheme} weights are read as stored: {func.__name__.split('.')[0]} needs them "
            "dequantized, which only their statistics do"
        )


def is_quantized(tensor: object) -> bool:
    return isinstance(tensor, QuantizedTensor)
