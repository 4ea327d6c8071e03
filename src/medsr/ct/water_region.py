"""A water-equivalent region of a CT volume, found automatically, and the noise measured in it.

The region: pixels of the full-dose image whose local mean over a ``WINDOW_MM`` square window lies in
``SOFT_TISSUE_HU`` (water-equivalent soft tissue) and whose local standard deviation is at most the
``UNIFORM_QUANTILE`` quantile of the local standard deviations of those candidates (the most uniform quarter:
no edges, no bone, no air). The noise in it (HU standard deviations over the region's pixels):

* ``added``: of ``low - full`` (the simulated noise alone; exact, no anatomy in it);
* ``input``: of ``full - local mean(full)`` (the image minus its ``WINDOW_MM`` box mean, which removes the
  remaining slow anatomy; it also removes a little of the noise: about ``1 / window^2`` of the variance of
  white noise, more for correlated noise, so it is a lower bound);
* ``total``: of ``low - local mean(full)``, i.e. the input's noise so estimated plus all of the added noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SOFT_TISSUE_HU = (-100.0, 150.0)
WINDOW_MM = 10.0
UNIFORM_QUANTILE = 0.25


def _window(pixel_mm: float) -> int:
    return max(3, 2 * math.floor(WINDOW_MM / pixel_mm / 2) + 1)


def _local_mean(images: torch.Tensor, window: int) -> torch.Tensor:
    return F.avg_pool2d(images[:, None], window, 1, window // 2, count_include_pad=False)[:, 0]


def water_region(full: torch.Tensor, pixel_mm: float) -> torch.Tensor:
    """Boolean mask ``[Z, H, W]`` of the region for full-dose HU images ``[Z, H, W]`` (empty when there is no
    soft tissue)."""
    window = _window(pixel_mm)
    mean = _local_mean(full, window)
    std = torch.sqrt(torch.clamp(_local_mean(full * full, window) - mean * mean, min=0))
    low, high = SOFT_TISSUE_HU
    candidates = (mean >= low) & (mean <= high) & (full >= low) & (full <= high)
    if not candidates.any():
        return candidates
    values = std[candidates]
    threshold = values.kthvalue(max(1, math.ceil(UNIFORM_QUANTILE * values.numel()))).values
    return candidates & (std <= threshold)


def region_noise(full: torch.Tensor, low: torch.Tensor, pixel_mm: float) -> dict[str, float | int | None]:
    """``added``, ``input`` and ``total`` noise (HU std, ``None`` without a region) and the region's size."""
    region = water_region(full, pixel_mm)
    n = int(region.sum())
    if n < 2:
        return {"added": None, "input": None, "total": None, "pixels": n}
    window = _window(pixel_mm)

    def std(x: torch.Tensor) -> float:
        return float(x[region].double().std())

    return {"added": std(low - full), "input": std(full - _local_mean(full, window)),
            "total": std(low - _local_mean(full, window)), "pixels": n}
