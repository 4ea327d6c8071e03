"""PatchGAN discriminator for adversarial training (``train.gan``): Isola et al., "Image-to-Image Translation with
Conditional Adversarial Networks", CVPR 2017."""

from __future__ import annotations

import torch
from torch import nn

from medsr.registry import MODELS


NORMS = ("layer", "instance")


@MODELS.register("patch_discriminator")
class PatchDiscriminator(nn.Module):
    """Strided 4x4 convolutions with LeakyReLU, one logit per overlapping patch: ``[B, C, H, W] -> [B, 1, h, w]``.

    ``norm`` after every strided convolution but the first: ``layer`` (GroupNorm with one group) or ``instance``
    (InstanceNorm, as in pix2pix and CNCL's reference code, github.com/gengmufeng/CNCL-denoising ``model.py``,
    whose discriminator is ``n_layers: 4, n_feats: 64`` here, up to its last layer: 3x3 here, padded 4x4 there).
    """

    def __init__(self, in_channels: int = 1, n_feats: int = 64, n_layers: int = 3, norm: str = "layer"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, n_feats, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = n_feats
        for i in range(1, n_layers):
            nxt = n_feats * min(2**i, 8)
            normalise = nn.GroupNorm(1, nxt) if norm == "layer" else nn.InstanceNorm2d(nxt)
            layers += [nn.Conv2d(width, nxt, 4, 2, 1), normalise, nn.LeakyReLU(0.2)]
            width = nxt
        layers.append(nn.Conv2d(width, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
