"""Hounsfield units and linear attenuation.

``mu = MU_WATER * (1 + HU / 1000)`` with ``MU_WATER = 0.0192 / mm``, the linear attenuation coefficient of water
at an effective energy of about 70 keV (NIST XCOM: 0.1929 cm^2/g at 70 keV, water density 1 g/cm^3), i.e. a
typical 120 kVp CT spectrum. Projections are line integrals of ``mu`` (dimensionless); images in mm^-1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medsr.errors import require

MU_WATER = 0.0192  # 1/mm at ~70 keV
AIR_HU = -1024.0  # lowest value kept by the simulation; padding below it is restored afterwards
CT_MIN_BELOW = -200.0  # HU: a CT slab always holds some air, lung or fat below this
PADDING_BELOW = AIR_HU  # HU: values below are padding outside the field of view, not air


def hu_to_mu(hu: torch.Tensor) -> torch.Tensor:
    """Linear attenuation (1/mm) from Hounsfield units."""
    return MU_WATER * (1 + hu / 1000)


def mu_to_hu(mu: torch.Tensor) -> torch.Tensor:
    """Hounsfield units from linear attenuation (1/mm)."""
    return (mu / MU_WATER - 1) * 1000


def hu_to_unit(hu: torch.Tensor) -> torch.Tensor:
    """The fixed network normalisation of medsr's CT denoisers: attenuation relative to water,
    ``mu / MU_WATER = 1 + HU / 1000`` (air 0, water 1, dense bone about 2). It never depends on the image's own
    statistics, so a noisy and a clean scan of the same object map through the same function."""
    return 1 + hu / 1000


def unit_to_hu(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hu_to_unit`."""
    return (x - 1) * 1000


def network_input(hu: torch.Tensor) -> torch.Tensor:
    """A denoiser's input from HU images ``[..., H, W]``: padding below ``AIR_HU`` clamped to air, then
    :func:`hu_to_unit`."""
    return hu_to_unit(torch.clamp(hu, min=AIR_HU))


def network_output(x: torch.Tensor, hu_in: torch.Tensor) -> torch.Tensor:
    """HU from a denoiser's output ``x``; pixels that were padding in ``hu_in`` (below ``AIR_HU``) keep their
    input value."""
    return torch.where(hu_in < AIR_HU, hu_in, unit_to_hu(x))


def check_ct(path: Path, volume: np.ndarray) -> None:
    """Refuse values that are not CT in HU: nothing below ``CT_MIN_BELOW`` once the padding (below
    ``PADDING_BELOW``, e.g. -3024 outside the field of view) is set aside."""
    inside = volume[volume >= PADDING_BELOW]
    require(inside.size > 0, path, f"holds only padding (values below {PADDING_BELOW:g} HU)")
    low, high = float(inside.min()), float(volume.max())
    require(low < CT_MIN_BELOW, path,
            f"values {low:.4g} .. {high:.4g} (padding below {PADDING_BELOW:g} aside) do not look like CT in HU "
            f"(nothing below {CT_MIN_BELOW:g} HU: no air, lung or fat); MR magnitudes, or stored values without "
            "rescale slope/intercept?")
