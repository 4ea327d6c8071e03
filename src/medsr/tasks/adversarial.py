"""The adversarial helper of ``train.gan``: a discriminator (a ``MODELS`` spec), its objective, weight and update
ratio. The base task owns one when the config enables it and the task names its real images
(``adversarial_target``); it adds :meth:`Adversary.generator_loss` to the task's loss and updates the
discriminator every ``g_steps_per_d_step`` steps."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from medsr.losses.gan import AdversarialLoss
from medsr.registry import MODELS


class Adversary(nn.Module):
    """``discriminator``: MODELS spec; ``loss``: ``lsgan``, ``vanilla`` or ``hinge``; the generator's loss gains
    ``weight * generator_loss``; the discriminator is updated after every ``g_steps_per_d_step``-th step."""

    def __init__(self, discriminator: Mapping[str, Any], loss: str = "lsgan", weight: float = 0.01,
                 g_steps_per_d_step: int = 1):
        super().__init__()
        if g_steps_per_d_step < 1:
            raise ValueError(f"g_steps_per_d_step must be at least 1, got {g_steps_per_d_step}")
        self.discriminator = MODELS.build(discriminator)
        self.objective = AdversarialLoss(loss)
        self.weight, self.g_steps_per_d_step = float(weight), int(g_steps_per_d_step)

    def due(self, step: int) -> bool:
        """Whether the discriminator is updated after generator step ``step`` (0-based)."""
        return (step + 1) % self.g_steps_per_d_step == 0

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return self.objective.generator(self.discriminator(fake))

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The discriminator's objective on real images and (detached) generated ones."""
        return self.objective.discriminator(self.discriminator(real), self.discriminator(fake))
