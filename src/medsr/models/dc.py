"""Data consistency on the LR grid, and a cascade of CNNs with data consistency for the reconstruction of
undersampled images (Schlemper et al., "A Deep Cascade of Convolutional Neural Networks for Dynamic MR Image
Reconstruction", IEEE TMI 37, 2018; D-C networks: each CNN refines a complex image, each DC layer puts the
measured k-space samples back).

Images are complex while they pass through the cascade (two channels, real and imaginary, for the CNNs) so that a
hard DC layer restores the sampled k-space exactly; the output is the magnitude. The pure k-space step is
:func:`medsr.kspace.data_consistency`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from medsr.kspace import data_consistency, fft2c, ifft2c
from medsr.models.base import SRModel
from medsr.models.blocks import conv
from medsr.models.undersampled import measurements
from medsr.registry import MODELS

DC_MODES = ("hard", "soft")


class DataConsistency(nn.Module):
    """``ifft2c(data_consistency(fft2c(x), measured, mask, w))`` of a complex image ``x [B, 1, h, w]``: ``hard``
    (``w = None``) or ``soft`` with a learned noise weight ``w = exp(log_weight) > 0`` starting at ``weight``."""

    def __init__(self, mode: str = "hard", weight: float = 1.0):
        super().__init__()
        if mode not in DC_MODES:
            raise ValueError(f"dc mode must be one of {', '.join(DC_MODES)}, got {mode!r}")
        if mode == "soft" and not weight > 0:
            raise ValueError(f"soft dc needs a positive weight, got {weight!r}")
        self.log_weight = nn.Parameter(torch.tensor(math.log(weight))) if mode == "soft" else None

    def forward(self, x: torch.Tensor, measured: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        if measured is None:
            return x
        weight = None if self.log_weight is None else self.log_weight.exp()
        return ifft2c(data_consistency(fft2c(x), measured[0], measured[1], weight))


def has_data_consistency(model: nn.Module) -> bool:
    """Whether ``model`` holds a :class:`DataConsistency` layer (it then needs measured complex k-space to be the
    model it was trained as; without it every such layer is the identity)."""
    return any(isinstance(m, DataConsistency) for m in model.modules())


class Refiner(nn.Module):
    """A plain CNN on (real, imaginary): ``x + cnn(x)``, last layer zero-initialised (starts as the identity)."""

    def __init__(self, n_feats: int, n_layers: int):
        super().__init__()
        layers: list[nn.Module] = [conv(2, n_feats), nn.ReLU(inplace=True)]
        for _ in range(n_layers - 2):
            layers += [conv(n_feats, n_feats), nn.ReLU(inplace=True)]
        last = conv(n_feats, 2)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(torch.cat([x.real, x.imag], dim=1))
        return x + torch.complex(out[:, :1], out[:, 1:])


@MODELS.register("dc_cascade")
class DCCascade(SRModel):
    """Reconstruction network: ``n_cascades`` x (refiner CNN of ``n_layers`` convolutions, ``n_feats`` wide, then
    data consistency ``dc`` = hard | soft) on the input's own grid (scale 1). Starts from the zero-filled complex
    image ``ifft2c(kspace)`` (or the magnitude input when no ``kspace`` is given); returns the magnitude."""

    fixed_scales = (1,)
    uses_kspace = True

    def __init__(self, n_cascades: int = 3, n_feats: int = 32, n_layers: int = 4, dc: str = "hard",
                 dc_weight: float = 1.0):
        super().__init__()
        if n_cascades < 1 or n_layers < 2:
            raise ValueError(f"dc_cascade needs n_cascades >= 1 and n_layers >= 2, got {n_cascades}, {n_layers}")
        self.refiners = nn.ModuleList(Refiner(n_feats, n_layers) for _ in range(n_cascades))
        self.dcs = nn.ModuleList(DataConsistency(dc, dc_weight) for _ in range(n_cascades))

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, kspace: torch.Tensor | None = None) -> torch.Tensor:
        self.check_scale(lr, out_size)
        return self.reconstruct(self.centre_slice(lr), mask, kspace).abs().to(lr.dtype)

    def reconstruct(self, centre: torch.Tensor, mask: torch.Tensor | None, kspace: torch.Tensor | None
                    ) -> torch.Tensor:
        """The complex reconstruction ``[B, 1, h, w]`` of the centre slice (its magnitude is the output)."""
        measured = measurements(centre, mask, kspace)
        x = ifft2c(measured[0]) if measured is not None else centre.float().to(torch.complex64)
        for refine, dc in zip(self.refiners, self.dcs):
            x = dc(refine(x), measured)
        return x
