"""Frequency-domain losses. The spectra are always computed in float32, outside autocast."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from medsr.kspace import fft2c, pad_kspace
from medsr.losses.base import Loss
from medsr.registry import LOSSES


def spectrum(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal spectrum of a real image batch, in complex64 even under autocast."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return fft2c(x.float())


def outside_band(shape: tuple[int, int], band: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Boolean ``[H, W]`` mask of the centred frequencies outside the central ``band`` (the k-space crop's window)."""
    inside = pad_kspace(torch.ones(band, device=device), shape)
    return inside == 0


@LOSSES.register("fft")
class FFTLoss(Loss):
    """L1 between the real and imaginary parts of the spectra (the frequency loss of MIMO-UNet, Cho et al.
    ICCV 2021)."""

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return torch.view_as_real(spectrum(sr) - spectrum(hr)).abs().mean()


@LOSSES.register("kspace")
class KSpaceLoss(Loss):
    """Mean |K(sr) - K(hr)| over the frequencies outside the central band of ``batch["lr"]``'s in-plane shape.

    The LR input already holds that band (it was made by cropping it, ``medsr.kspace.downsample``), so this loss
    pushes the model to synthesise exactly what the input lacks.
    """

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        shape = tuple(hr.shape[-2:])
        mask = outside_band(shape, tuple(batch["lr"].shape[-2:]), hr.device)
        if not bool(mask.any()):
            return sr.sum() * 0.0
        diff = (spectrum(sr) - spectrum(hr)).abs()
        return diff[..., mask].mean()
