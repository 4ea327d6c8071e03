"""The adversarial helper of ``train.gan``: a discriminator (a ``MODELS`` spec), its objective, weight and update
ratio. The base task owns one when the config enables it and the task names its real images
(``adversarial_target``); it adds :meth:`Adversary.generator_loss` to the task's loss and updates the
discriminator every ``g_steps_per_d_step`` steps.

What the discriminator sees: the model's image (real: the batch's ``adversarial_target``), then with ``noise`` the
model's noise estimate ``aux["noise"]`` (real: ``condition - target``), then with ``condition`` the network input
(the batch key ``condition``, the same in real and fake stacks): a conditional GAN (Isola et al., "Image-to-Image
Translation with Conditional Adversarial Networks", CVPR 2017). CNCL's reference code
(github.com/gengmufeng/CNCL-denoising, ``train.py``) scores ``[content, noise, low dose]`` this way.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from medsr.errors import InputError
from medsr.losses.gan import AdversarialLoss
from medsr.models.base import Denoiser, Output, SRModel, as_image
from medsr.registry import MODELS


class Adversary(nn.Module):
    """``discriminator``: MODELS spec (its ``in_channels`` is set here: 1 + ``noise`` + 1 with ``condition``);
    ``loss``: ``lsgan``, ``vanilla`` or ``hinge``; the generator's loss gains ``weight * generator_loss``; the
    discriminator is updated after every ``g_steps_per_d_step``-th step; ``real``: the batch key of real images;
    ``condition``: the batch key of the network input the discriminator also sees (None: unconditional);
    ``noise``: whether it also sees the noise estimate (needs ``condition``)."""

    def __init__(self, discriminator: Mapping[str, Any], loss: str = "lsgan", weight: float = 0.01,
                 g_steps_per_d_step: int = 1, real: str = "hr", condition: str | None = None, noise: bool = False):
        super().__init__()
        if g_steps_per_d_step < 1:
            raise ValueError(f"g_steps_per_d_step must be at least 1, got {g_steps_per_d_step}")
        if noise and condition is None:
            raise ValueError("noise: the real noise is condition - target, so it needs a condition")
        self.real, self.condition, self.noise = real, condition, bool(noise)
        channels = 1 + int(self.noise) + int(condition is not None)
        self.discriminator = MODELS.build(discriminator, in_channels=channels)
        self.objective = AdversarialLoss(loss)
        self.weight, self.g_steps_per_d_step = float(weight), int(g_steps_per_d_step)

    def check(self, model: nn.Module) -> None:
        """Raise ``ValueError`` when the discriminator needs a noise estimate that ``model`` does not declare."""
        declared = model.aux_outputs if isinstance(model, (SRModel, Denoiser)) else ()
        if self.noise and "noise" not in declared:
            raise ValueError(f"noise: needs a model with a noise output, not {type(model).__name__}")

    def due(self, step: int) -> bool:
        """Whether the discriminator is updated after generator step ``step`` (0-based)."""
        return (step + 1) % self.g_steps_per_d_step == 0

    def stacks(self, output: Output, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(real, fake)`` discriminator inputs ``[B, in_channels, H, W]`` of one batch (module docstring)."""
        if self.condition is not None and self.condition not in batch:
            raise InputError("train.gan.condition", f"no batch key {self.condition!r} (keys: {', '.join(batch)})")
        target = batch[self.real]
        real, fake = [target], [as_image(output)]
        if self.noise:
            real.append(batch[self.condition] - target)
            fake.append(output.aux["noise"])  # a ModelOutput: check() refused models without a noise output
        if self.condition is not None:
            real.append(batch[self.condition])
            fake.append(batch[self.condition])
        return torch.cat(real, dim=1), torch.cat(fake, dim=1)

    def generator_loss(self, output: Output, batch: Mapping[str, Any]) -> torch.Tensor:
        """The generator's adversarial loss: the discriminator's score of the model's ``output``."""
        return self.objective.generator(self.discriminator(self.stacks(output, batch)[1]))

    def discriminator_loss(self, output: Output, batch: Mapping[str, Any]) -> torch.Tensor:
        """The discriminator's objective on the real stack and the (detached) generated one."""
        real, fake = self.stacks(output, batch)
        return self.objective.discriminator(self.discriminator(real), self.discriminator(fake.detach()))
