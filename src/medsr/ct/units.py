"""Hounsfield units and linear attenuation.

``mu = MU_WATER * (1 + HU / 1000)`` with ``MU_WATER = 0.0192 / mm``, the linear attenuation coefficient of water
at an effective energy of about 70 keV (NIST XCOM: 0.1929 cm^2/g at 70 keV, water density 1 g/cm^3), i.e. a
typical 120 kVp CT spectrum. Projections are line integrals of ``mu`` (dimensionless); images in mm^-1.
"""

from __future__ import annotations

import torch

MU_WATER = 0.0192  # 1/mm at ~70 keV
AIR_HU = -1024.0  # lowest value kept by the simulation; padding below it is restored afterwards


def hu_to_mu(hu: torch.Tensor) -> torch.Tensor:
    """Linear attenuation (1/mm) from Hounsfield units."""
    return MU_WATER * (1 + hu / 1000)


def mu_to_hu(mu: torch.Tensor) -> torch.Tensor:
    """Hounsfield units from linear attenuation (1/mm)."""
    return (mu / MU_WATER - 1) * 1000
