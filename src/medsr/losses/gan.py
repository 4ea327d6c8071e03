"""Adversarial objectives: LSGAN / vanilla / hinge (the discriminator is ``medsr.models.discriminator``).

LSGAN after Mao et al., ICCV 2017; hinge after Lim & Ye 2017 / Miyato et al., ICLR 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_LOSSES = ("lsgan", "vanilla", "hinge")


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
