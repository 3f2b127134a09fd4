"""What the probe feeds the model: a seeded random tensor of the example input's shape, an
image preprocessed as the model expects it, or the tensors of a `.safetensors` / `.pt` file
(read by the reading layer, never by torch.load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelbrowse.core.arguments import ExampleInput
from modelbrowse.core.example_inputs import input_dtypes, input_hint, takes_tokens
from modelbrowse.core.probe.result import ProbeError
from modelbrowse.core.reading import ReadError
from modelbrowse.core.reading.records import TensorRecord

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = (3, 224, 224)  # when the example input does not say

ProbeInputs = list[torch.Tensor] | dict[str, torch.Tensor]


def probe_inputs(
    model: nn.Module,
    example: ExampleInput | None,
    input_file: Path | None,
    weights: str | None,
    *,
    seed: int = 0,
) -> ProbeInputs:
    """The probe's inputs: `input_file` (an image, or a tensor file) when given, else random
    tensors of `example`'s shapes drawn from `seed` (token ids within the vocabulary for a
    model fed tokens, the model's float dtype for float inputs). `weights` names torchvision
    weights whose own transforms preprocess an image."""
    if input_file is not None:
        if input_file.suffix.lower() in IMAGE_SUFFIXES:
            return [image_input(input_file, weights, example)]
        return read_tensors(input_file, "--input")
    if example is None:
        raise ProbeError(
            f"no example input for this model: give --input-shape {input_hint(model)} "
            "or --input FILE"
        )
    generator = torch.Generator().manual_seed(seed)
    vocab = vocabulary(model)
    float_dtype = _float_dtype(model)
    tensors = []
    for shape, name, asked in zip(
        example.shapes, input_dtypes(model, example), example.dtypes, strict=True
    ):
        dtype = getattr(torch, name)
        if dtype.is_floating_point:
            if asked is None:
                dtype = float_dtype
            tensors.append(torch.randn(shape, generator=generator).to(dtype))
        elif dtype == torch.bool:
            tensors.append(torch.randint(0, 2, shape, generator=generator).bool())
        else:
            tensors.append(torch.randint(0, vocab, shape, generator=generator, dtype=dtype))
    return tensors


def vocabulary(model: nn.Module) -> int:
    """How many token ids a model fed tokens takes: its first embedding's rows, else its
    config's `vocab_size`; 2 for integer inputs of other models."""
    if takes_tokens(model):
        for module in model.modules():
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.num_embeddings > 0:
                return int(module.num_embeddings)
        size = getattr(getattr(model, "config", None), "vocab_size", None)
        if isinstance(size, int) and size > 0:
            return size
    return 2


def _float_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def image_input(path: Path, weights: str | None, example: ExampleInput | None) -> torch.Tensor:
    """An image as a batch of one: by the transforms of torchvision `weights` where given,
    else resized to the example input's height and width (224x224 by default) and normalised
    with ImageNet's mean and std."""
    channels, height, width = IMAGE_SIZE
    if example is not None and len(example.shapes[0]) == 4:
        channels, height, width = example.shapes[0][1:]
    if channels not in (1, 3):
        raise ProbeError(f"--input {path.name}: an image has 1 or 3 channels, the model {channels}")
    image = decode_image(path, gray=channels == 1)
    if weights is not None:
        from torchvision.models import get_weight

        transform = get_weight(weights).transforms()
        return transform(image).unsqueeze(0)  # type: ignore[no-any-return]
    from torchvision.transforms.v2 import functional as TF

    resized = TF.resize(image, [height, width], antialias=True)
    scaled = resized.float() / 255
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.449,), (0.226,))
    normalized: torch.Tensor = TF.normalize(scaled, list(mean), list(std))
    return normalized.unsqueeze(0)


def decode_image(path: Path, gray: bool = False) -> torch.Tensor:
    """An image file (any format Pillow reads: PNG, JPEG, BMP, GIF, WebP, TIFF, PPM) as uint8
    (C, H, W); one line when it cannot be read. Pillow refuses decompression bombs."""
    if not path.is_file():
        raise ProbeError(f"--input {path}: no such file")
    from PIL import Image

    try:
        with Image.open(path) as opened:
            picture = opened.convert("L" if gray else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ProbeError(f"--input {path}: cannot read the image ({reason})") from exc
    data = torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8)
    return data.reshape(picture.height, picture.width, -1).permute(2, 0, 1).contiguous()


def probe_target(path: Path) -> torch.Tensor:
    """`--target FILE`: the one tensor a `.safetensors` or `.pt` file holds."""
    found = read_tensors(path, "--target")
    tensors = list(found.values()) if isinstance(found, dict) else found
    if len(tensors) != 1:
        raise ProbeError(f"--target {path}: expected one tensor, the file holds {len(tensors)}")
    return tensors[0]


def read_tensors(path: Path, flag: str) -> ProbeInputs:
    """The tensors of a `.safetensors` or torch file, through the reading layer: one tensor
    (bare, or alone under any key) is the one positional input; a list or tuple, or keys
    0, 1, ..., are positional inputs in order; other keys are keyword inputs (input_ids,
    attention_mask)."""
    from modelbrowse.core.reading.file_kinds import FileKind, sniff

    if not path.is_file():
        raise ProbeError(f"{flag} {path}: no such file")
    expected = "a .safetensors or a .pt file of tensors"
    if flag == "--input":
        expected = f"an image ({', '.join(IMAGE_SUFFIXES)}) or {expected}"
    try:
        kind = sniff(path)
    except ReadError:
        kind = None
    if kind not in (FileKind.SAFETENSORS, FileKind.TORCH_ZIP, FileKind.TORCH_LEGACY):
        raise ProbeError(f"{flag} {path}: expected {expected}")
    try:
        if kind is FileKind.SAFETENSORS:
            from modelbrowse.core.sources.safetensors_files import open_safetensors

            value: Any = open_safetensors([path], "cpu").tensors
        else:
            from modelbrowse.core.sources.files import read_torch

            value = _mapped(read_torch(path, kind).value, f"{flag} {path}")
    except ReadError as exc:
        raise ProbeError(f"{flag} {path}: {exc}") from exc
    return _arranged(value, f"{flag} {path}")


def _mapped(value: Any, where: str) -> Any:
    """Tensor records (and lists, tuples and dicts of them) as tensors."""
    from modelbrowse.core.sources.tensor_mapping import FileMaps

    maps = FileMaps()
    if isinstance(value, TensorRecord):
        return maps.tensor(value)
    if isinstance(value, (list, tuple)):
        return [_one(maps, v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _one(maps, v, where) for k, v in value.items()}
    raise ProbeError(f"{where}: holds a {type(value).__name__}, not tensors")


def _one(maps: Any, value: Any, where: str) -> torch.Tensor:
    if not isinstance(value, TensorRecord):
        raise ProbeError(f"{where}: holds a {type(value).__name__} among its tensors")
    tensor: torch.Tensor = maps.tensor(value)
    return tensor


def _arranged(value: Any, where: str) -> ProbeInputs:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list):
        if not value:
            raise ProbeError(f"{where}: holds no tensors")
        return value
    if not value:
        raise ProbeError(f"{where}: holds no tensors")
    if len(value) == 1:
        return list(value.values())
    if all(key.isdigit() for key in value):
        return [value[key] for key in sorted(value, key=int)]
    return dict(value)
