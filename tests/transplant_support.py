"""A detection model whose backbone is a resnet18, and resnet18 checkpoints to transplant."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from safetensors.torch import save_file
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

DET_BUILDER = """
import torch
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone


def build():
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None)
    return FasterRCNN(backbone, num_classes=3)
"""


def write_det(directory: Path) -> Path:
    """`det.py`, whose `build` makes FasterRCNN on a resnet18 FPN backbone (no download)."""
    path = directory / "det.py"
    path.write_text(DET_BUILDER)
    return path


def det_model() -> nn.Module:
    """What `det.py:build` makes."""
    torch.manual_seed(0)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None)
    model: nn.Module = FasterRCNN(backbone, num_classes=3)
    return model


def resnet18_state(seed: int = 7) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model: nn.Module = torchvision.models.resnet18()
    return model.state_dict()


def write_resnet18(directory: Path, suffix: str, seed: int = 7) -> Path:
    """A plain resnet18 state_dict as `.safetensors` or `.pt`."""
    path = directory / f"resnet18{suffix}"
    state = resnet18_state(seed)
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    return path
