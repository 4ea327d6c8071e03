"""Adversarial training pieces: a PatchGAN discriminator and the LSGAN / vanilla / hinge objectives.

PatchGAN after Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks", CVPR 2017;
LSGAN after Mao et al., ICCV 2017; hinge after Lim & Ye 2017 / Miyato et al., ICLR 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medsr.registry import MODELS

GAN_LOSSES = ("lsgan", "vanilla", "hinge")


@MODELS.register("patch_discriminator")
class PatchDiscriminator(nn.Module):
    """Strided 4x4 convolutions with LeakyReLU, one logit per overlapping patch: ``[B, C, H, W] -> [B, 1, h, w]``."""

    def __init__(self, in_channels: int = 1, n_feats: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, n_feats, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = n_feats
        for i in range(1, n_layers):
            nxt = n_feats * min(2**i, 8)
            layers += [nn.Conv2d(width, nxt, 4, 2, 1), nn.GroupNorm(1, nxt), nn.LeakyReLU(0.2)]
            width = nxt
        layers.append(nn.Conv2d(width, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AdversarialLoss:
    """The generator and discriminator objectives of one GAN formulation (``lsgan``, ``vanilla``, ``hinge``)."""

    def __init__(self, kind: str):
        if kind not in GAN_LOSSES:
            raise ValueError(f"GAN loss must be one of {', '.join(GAN_LOSSES)}, got {kind!r}")
        self.kind = kind

    def _towards(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.full_like(logits, 1.0 if real else 0.0)
        if self.kind == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Loss of the generator whose output the discriminator scored ``fake_logits``."""
        if self.kind == "hinge":
            return -fake_logits.mean()
        return self._towards(fake_logits, real=True)

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Loss of the discriminator on real (HR) and fake (detached SR) logits."""
        if self.kind == "hinge":
            return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
        return 0.5 * (self._towards(real_logits, real=True) + self._towards(fake_logits, real=False))
