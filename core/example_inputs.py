"""What an example input looks like for a model: the dtypes its first layer takes, and a hint."""

from __future__ import annotations

from torch import nn

from modelbrowse.core.arguments import ExampleInput

TOKENS_HINT = "1,16:long"
IMAGE_HINT = "1,3,224,224"
# Sizes after the channels, by a convolution's number of spatial dimensions.
_SPATIAL = {1: (64,), 2: (224, 224), 3: (16, 112, 112)}


def first_layer(model: nn.Module) -> nn.Module | None:
    """The first module, in the order they were registered, that holds parameters of its own."""
    for module in model.modules():
        if any(p is not None for p in module._parameters.values()):
            return module
    return None


def takes_tokens(model: nn.Module) -> bool:
    """True for a model fed token ids: its first layer is an embedding, or it is a
    transformers model whose main input is `input_ids`."""
    if getattr(model, "main_input_name", None) == "input_ids":
        return True
    return isinstance(first_layer(model), (nn.Embedding, nn.EmbeddingBag))


def input_dtypes(model: nn.Module, example: ExampleInput) -> tuple[str, ...]:
    """A dtype for each input: its own, else int64 for a model fed tokens, else float32."""
    if all(dtype is not None for dtype in example.dtypes):
        return tuple(d for d in example.dtypes if d is not None)
    chosen = "int64" if takes_tokens(model) else "float32"
    return tuple(chosen if dtype is None else dtype for dtype in example.dtypes)


def input_hint(model: nn.Module) -> str:
    """An `--input-shape` the model's first layer accepts (`1,10` before `Linear(10, ...)`)."""
    if takes_tokens(model):
        return TOKENS_HINT
    layer = first_layer(model)
    dims: tuple[int, ...] | None = None
    if isinstance(layer, nn.Linear) and layer.in_features > 0:
        dims = (1, layer.in_features)
    elif isinstance(layer, nn.modules.conv._ConvNd) and layer.in_channels > 0:
        spatial = _SPATIAL.get(len(layer.kernel_size))
        dims = (1, layer.in_channels, *spatial) if spatial else None
    elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.num_features > 0:
        dims = (1, layer.num_features)
        if isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm3d)):
            dims = (*dims, *_SPATIAL[2 if isinstance(layer, nn.BatchNorm2d) else 3])
    elif isinstance(layer, nn.LayerNorm):
        dims = (1, 16, *layer.normalized_shape)
    return ",".join(str(d) for d in dims) if dims else IMAGE_HINT
