"""Segmentation losses for ``task: segmentation`` (the tissue UNet behind the seg-guided perceptual loss).

Same signature as every loss, ``loss(pred, target, batch)``: here ``pred`` is the logits ``[B, C, H, W]`` and
``target`` the label map ``[B, H, W]``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from medsr.losses.base import Loss
from medsr.registry import LOSSES


def labels_of(target: torch.Tensor | None) -> torch.Tensor:
    if target is None:
        raise ValueError("segmentation losses need tissue labels as the target")
    return target.long()


@LOSSES.register("cross_entropy")
class CrossEntropyLoss(Loss):
    """Pixel-wise cross-entropy of logits against the label map."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor | None, batch: Mapping[str, Any]) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels_of(target))


@LOSSES.register("dice")
class SoftDiceLoss(Loss):
    """``1 - mean_c 2 sum(p_c y_c) / (sum p_c + sum y_c)`` over the classes (background excluded by default),
    with softmax probabilities p: the soft Dice loss of Milletari et al., "V-Net", 3DV 2016."""

    def __init__(self, include_background: bool = False, eps: float = 1.0):
        super().__init__()
        self.include_background, self.eps = include_background, float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor | None, batch: Mapping[str, Any]) -> torch.Tensor:
        prob = logits.float().softmax(dim=1)
        onehot = F.one_hot(labels_of(target), prob.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)
        first = 0 if self.include_background else 1
        prob, onehot = prob[:, first:], onehot[:, first:]
        inter = (prob * onehot).sum(dim=(0, 2, 3))
        sizes = prob.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
        return 1.0 - ((2 * inter + self.eps) / (sizes + self.eps)).mean()
