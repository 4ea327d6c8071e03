"""Pixel losses: L1, Charbonnier, MSE and SSIM. Each is ``loss(sr, hr, batch) -> scalar``."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from medsr.losses.base import Loss
from medsr.registry import LOSSES


@LOSSES.register("l1")
class L1Loss(Loss):
    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return (sr - hr).abs().mean()


@LOSSES.register("mse")
class MSELoss(Loss):
    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return (sr - hr).pow(2).mean()


@LOSSES.register("charbonnier")
class CharbonnierLoss(Loss):
    """sqrt((sr - hr)^2 + eps^2), a smooth L1 (Charbonnier et al. 1994; used by LapSRN, Lai et al. 2017)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = float(eps)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return torch.sqrt((sr - hr).pow(2) + self.eps**2).mean()


def gaussian_taps(size: int = 11, sigma: float = 1.5, device: torch.device | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian window."""
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    taps = torch.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: torch.Tensor, size: int = 11,
             sigma: float = 1.5) -> torch.Tensor:
    """Differentiable SSIM map (Wang et al. 2004: Gaussian window, population covariance, K1 0.01, K2 0.03)
    over the valid region of ``[B, 1, H, W]`` images; ``data_range`` is ``[B]``.

    ``medsr.metrics.image.ssim`` computes the same quantity in place for speed (no autograd); this version
    builds a graph so it can be trained on.
    """
    taps = gaussian_taps(size, sigma, x.device).to(x.dtype)
    wy, wx = taps.view(1, 1, -1, 1), taps.view(1, 1, 1, -1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wy), wx)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    r = data_range.view(-1, 1, 1, 1).to(x.dtype)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    return (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


@LOSSES.register("ssim")
class SSIMLoss(Loss):
    """1 - SSIM per image (:func:`ssim_map`, 11x11 Gaussian window shrunk to the largest odd size that fits),
    data range = the HR image's max - min, averaged over the batch."""

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        sr, hr = sr.float().flatten(0, 1)[:, None], hr.float().flatten(0, 1)[:, None]
        data_range = (hr.amax(dim=(-2, -1)) - hr.amin(dim=(-2, -1))).flatten().clamp_min(1e-6)
        side = min(11, *hr.shape[-2:])
        size = side if side % 2 else side - 1
        return 1.0 - ssim_map(sr, hr, data_range, size=size).mean()
