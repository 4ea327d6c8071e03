"""Pixel losses of CNCL's two branches (Geng et al., IEEE TMI 2022): the noise predictor is trained on the noise
``ld - fd`` of the input besides the content, so the two branches stay complementary instead of collapsing into
one.

* ``content_noise`` (the paper's configuration, :mod:`medsr.models.cncl`): the L1 distance between the stacks
  ``[fused, noise]`` and ``[fd, ld - fd]``, i.e. the mean of the two L1 terms, as the reference code's
  ``criterion_pixelwise(fake_B, real_B)`` (github.com/gengmufeng/CNCL-denoising, ``train.py``);
* ``complementary`` (CNCL-lite, :mod:`medsr.models.cncl_lite`): ``L1(content, fd) + L1(noise, ld - fd)`` on the
  content predictor's own estimate, added to an L1 on the fused image by its config.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from medsr.models.base import ModelOutput
from medsr.losses.base import Loss
from medsr.registry import LOSSES


def noise_l1(output: ModelOutput, target: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
    """``L1(noise, ld - fd)``: the noise branch against the input's noise."""
    return (output.aux["noise"] - (batch["ld"] - target)).abs().mean()


@LOSSES.register("content_noise")
class ContentNoiseLoss(Loss):
    """``(L1(fused, fd) + L1(noise, ld - fd)) / 2``; reads the model's ``aux`` and the batch's input ``ld``."""

    needs_aux = "noise"

    def forward(self, output: ModelOutput, target: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return 0.5 * ((output.image - target).abs().mean() + noise_l1(output, target, batch))


@LOSSES.register("complementary")
class ComplementaryLoss(Loss):
    """``L1(content, fd) + L1(noise, ld - fd)``; reads the model's ``aux`` and the batch's input ``ld``."""

    needs_aux = "noise"

    def forward(self, output: ModelOutput, target: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return (output.aux["content"] - target).abs().mean() + noise_l1(output, target, batch)
