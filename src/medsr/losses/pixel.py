"""Pixel losses: L1, Charbonnier, MSE and SSIM. Each is ``loss(sr, hr, batch) -> scalar``."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from medsr.registry import LOSSES


@LOSSES.register("l1")
class L1Loss(nn.Module):
    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return (sr - hr).abs().mean()


@LOSSES.register("mse")
class MSELoss(nn.Module):
    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return (sr - hr).pow(2).mean()


@LOSSES.register("charbonnier")
class CharbonnierLoss(nn.Module):
    """sqrt((sr - hr)^2 + eps^2), a smooth L1 (Charbonnier et al. 1994; used by LapSRN, Lai et al. 2017)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = float(eps)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return torch.sqrt((sr - hr).pow(2) + self.eps**2).mean()


@LOSSES.register("ssim")
class SSIMLoss(nn.Module):
    """1 - SSIM (Wang et al. 2004) per image, with ``medsr.metrics.image.ssim``; data range = the HR image's
    max - min (per image), as in the validation protocol."""

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        from medsr.metrics.image import ssim

        sr, hr = sr.float(), hr.float()
        data_range = (hr.amax(dim=(-3, -2, -1)) - hr.amin(dim=(-3, -2, -1))).clamp_min(1e-6)
        return 1.0 - ssim(sr, hr, data_range=data_range).mean()
