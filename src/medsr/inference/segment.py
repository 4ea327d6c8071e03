"""Label maps from a segmentation network: the one path of validation and ``medsr test`` for segmentation weights."""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.unet import UNet


@torch.no_grad()
def segment(model: nn.Module, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Label map ``[N, H, W]`` (argmax of the logits) of images ``[N, 1, H, W]``, in batches, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(images[i : i + batch_size].to(device)).argmax(dim=1).cpu()
                      for i in range(0, images.shape[0], batch_size)])


def num_classes(model: nn.Module) -> int:
    """Output classes of a segmentation network (a :class:`~medsr.models.unet.UNet`)."""
    if not isinstance(model, UNet):
        raise ValueError(f"{type(model).__name__} is not a segmentation network (a unet)")
    return model.classifier.out_channels
