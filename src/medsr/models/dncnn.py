"""DnCNN-style residual denoiser: Zhang et al., "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for
Image Denoising", IEEE TIP 26(7), 2017.

``depth`` 3x3 convolutions: conv + ReLU, ``depth - 2`` x (conv + batch norm + ReLU), conv to one channel; the
network predicts the noise and returns ``x - noise`` (residual learning). The paper's DnCNN-S has depth 17 and
64 features; the CPU-sized defaults are depth 10 and 32 features.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.blocks import conv
from medsr.models.base import Denoiser
from medsr.registry import MODELS


@MODELS.register("dncnn")
class DnCNN(Denoiser):
    """``forward(x [B, 1, H, W]) -> x - noise(x)``."""

    def __init__(self, depth: int = 10, width: int = 32, batch_norm: bool = True):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2, got {depth}")
        layers: list[nn.Module] = [conv(1, width), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [conv(width, width, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(width)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
        layers.append(conv(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.net(x)
