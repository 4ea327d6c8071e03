"""2-D UNet for tissue segmentation: Ronneberger et al., "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015. 'Same' convolutions (with optional batch normalisation) instead of the paper's
valid ones, so the output has the input's size. Used to make segmentation priors and as the frozen feature
network of the segmentation-guided perceptual loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.blocks import conv
from medsr.registry import MODELS


def double_conv(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 conv (+ batch norm) + ReLU layers."""
    layers: list[nn.Module] = []
    for c in (in_channels, out_channels):
        layers += [conv(c, out_channels, bias=not batch_norm)]
        layers += [nn.BatchNorm2d(out_channels)] if batch_norm else []
        layers += [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


@MODELS.register("unet")
class UNet(nn.Module):
    """``forward(x [B, in_channels, H, W]) -> logits [B, num_classes, H, W]`` for any ``H, W``: the input is padded
    (replicate, bottom/right) to a multiple of ``2 ** depth`` and the output cropped back.

    Defaults are the paper's widths (64 doubling over 4 levels); ``num_classes`` 4 = background, CSF, GM, WM.
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 4, base: int = 64, depth: int = 4, batch_norm: bool = True
    ):
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.down = nn.ModuleList([double_conv(in_channels, widths[0], batch_norm)])
        self.down.extend(double_conv(a, b, batch_norm) for a, b in zip(widths[:-1], widths[1:]))
        self.up = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.merge = nn.ModuleList(double_conv(2 * a, a, batch_norm) for a in widths[:-1])
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features (full resolution to bottleneck), then decoder features (coarse to full), padded grid."""
        if x.dim() != 4:
            raise ValueError(f"expected x of shape [B, C, H, W], got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        m = 2**self.depth
        x = F.pad(x, (0, math.ceil(W / m) * m - W, 0, math.ceil(H / m) * m - H), mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        decoded = []
        for i in reversed(range(self.depth)):
            x = self.merge[i](torch.cat([skips[i], self.up[i](x)], dim=1))
            decoded.append(x)
        return skips + decoded

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The ``depth + 1`` encoder features (full resolution down to the bottleneck) followed by the ``depth``
        decoder features (coarse to full resolution), each cropped to the input's extent at its level
        (``ceil(H / 2**l) x ceil(W / 2**l)``)."""
        H, W = x.shape[-2:]
        feats = self._run(x)
        levels = list(range(self.depth + 1)) + list(reversed(range(self.depth)))
        return [f[..., : math.ceil(H / 2**l), : math.ceil(W / 2**l)] for f, l in zip(feats, levels)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        return self.classifier(self._run(x)[-1])[..., :H, :W]
