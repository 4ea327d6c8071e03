"""Branch supervision of CNCL (:mod:`medsr.models.cncl`; Geng et al., IEEE TMI 2022): each predictor is trained
on its own target besides the fused output, the content predictor on the full-dose image and the noise predictor
on the noise ``ld - fd`` of the input, so the two branches stay complementary instead of collapsing into one."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from medsr.models.base import ModelOutput
from medsr.losses.base import Loss
from medsr.registry import LOSSES


@LOSSES.register("complementary")
class ComplementaryLoss(Loss):
    """``L1(content, fd) + L1(noise, ld - fd)``; reads the model's ``aux`` and the batch's input ``ld``."""

    needs_aux = "noise"

    def forward(self, output: ModelOutput, target: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        content, noise = output.aux["content"], output.aux["noise"]
        return (content - target).abs().mean() + (noise - (batch["ld"] - target)).abs().mean()
