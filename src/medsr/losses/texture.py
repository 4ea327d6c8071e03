"""Gram-matrix texture loss on a fixed, parameter-free filter bank (no weights file needed).

Style/texture statistics after Gatys et al., "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016:
the Gram matrix of feature maps (their channel covariance, averaged over pixels) describes texture independent
of where it sits. Here the features are the responses to the eight non-constant 3x3 DCT-II basis filters (an
orthonormal set spanning every local 3x3 pattern but the mean) at ``scales`` dyadic resolutions (2x2 average
pooling between them), so matching them matches the local covariance, i.e. the shape of the noise power
spectrum, which CT readers see as image texture (over-smoothed "plastic" denoising has too little of it).
The loss is the mean absolute difference of the Gram matrices, summed over scales. For Gram and perceptual terms
on a learned encoder, see :mod:`medsr.losses.perceptual` (``gram``, ``perceptual``).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from medsr.losses.perceptual import gram
from medsr.losses.base import Loss
from medsr.registry import LOSSES


def dct_filters(size: int = 3) -> torch.Tensor:
    """The ``size^2 - 1`` non-constant 2-D DCT-II basis filters ``[size^2 - 1, 1, size, size]`` (orthonormal)."""
    n = torch.arange(size, dtype=torch.float64)
    basis = torch.stack([torch.cos(math.pi * (n + 0.5) * k / size) for k in range(size)])
    basis = basis / basis.norm(dim=1, keepdim=True)
    filters = torch.einsum("ai,bj->abij", basis, basis).reshape(size * size, size, size)
    return filters[1:, None].float()


@LOSSES.register("texture")
class TextureLoss(Loss):
    """``sum_scales mean |Gram(F(pred)) - Gram(F(target))|``, ``F`` the DCT filter responses."""

    def __init__(self, scales: int = 3):
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be at least 1, got {scales}")
        self.scales = int(scales)
        self.register_buffer("filters", dct_filters(), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        total = pred.new_zeros(())
        filters = self.filters.to(pred.dtype)
        for level in range(self.scales):
            if level:
                pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
            if min(pred.shape[-2:]) < 3:
                break
            total = total + (gram(F.conv2d(pred, filters)) - gram(F.conv2d(target, filters))).abs().mean()
        return total
