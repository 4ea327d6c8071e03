"""Ellipse phantoms: rasterised images and exact line integrals (for testing projectors and calibrating noise).

An ellipse is ``(value, a, b, x0, y0, phi)``: added value, semi-axes along its own x and y (mm), centre (mm) and
rotation (radians, counter-clockwise), in the coordinates of :mod:`medsr.ct.geometry`. Its parallel projection
at ``(theta, s)`` is ``2 value a b sqrt(r^2 - (s - s0)^2) / r^2`` inside ``|s - s0| < r``, with
``r^2 = a^2 cos^2(theta - phi) + b^2 sin^2(theta - phi)`` and ``s0 = x0 cos(theta) + y0 sin(theta)`` (Kak & Slaney
eq. 3.8, shifted and rotated).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from medsr.ct.geometry import Geometry
from medsr.ct.units import MU_WATER

Ellipse = tuple[float, float, float, float, float, float]
WATER_CYLINDER_DIAMETER = 300.0  # mm


def water_cylinder(diameter: float = WATER_CYLINDER_DIAMETER) -> list[Ellipse]:
    """A centred water cylinder (attenuation ``MU_WATER``)."""
    return [(MU_WATER, diameter / 2, diameter / 2, 0.0, 0.0, 0.0)]


def body_phantom(scale: float = 1.0) -> list[Ellipse]:
    """A small abdomen-like phantom in 1/mm (water body 300 x 200 mm, with fat, bone and lung-like inserts)."""
    s = scale
    return [
        (MU_WATER, 150 * s, 100 * s, 0.0, 0.0, 0.0),
        (-0.1 * MU_WATER, 30 * s, 20 * s, -70 * s, 10 * s, math.radians(20)),  # fat, -100 HU
        (1.0 * MU_WATER, 15 * s, 15 * s, 60 * s, -30 * s, 0.0),  # bone, +1000 HU
        (-0.8 * MU_WATER, 25 * s, 35 * s, 50 * s, 40 * s, math.radians(-30)),  # lung-like, -800 HU
        (0.05 * MU_WATER, 10 * s, 6 * s, 0.0, -60 * s, 0.0),  # low contrast, +50 HU
    ]


def ellipse_line_integrals(ellipses: Sequence[Ellipse], theta: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Exact line integrals of the phantom along the parallel rays ``(theta, s)`` (same shape as ``theta``)."""
    total = torch.zeros_like(theta)
    for value, a, b, x0, y0, phi in ellipses:
        r2 = a**2 * torch.cos(theta - phi) ** 2 + b**2 * torch.sin(theta - phi) ** 2
        d = s - (x0 * torch.cos(theta) + y0 * torch.sin(theta))
        total = total + 2 * value * a * b * torch.sqrt(torch.clamp(r2 - d**2, min=0)) / r2
    return total


def ellipse_sinogram(ellipses: Sequence[Ellipse], geometry: Geometry, dtype: torch.dtype = torch.float64
                     ) -> torch.Tensor:
    """The exact sinogram ``[n_views, n_det]`` of the phantom in ``geometry`` (ideal point detectors)."""
    theta, s = geometry.parallel_rays(dtype=dtype)
    return ellipse_line_integrals(ellipses, theta, s)


def ellipse_image(ellipses: Sequence[Ellipse], geometry: Geometry, supersample: int = 4,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The phantom on the image grid ``[H, W]``, each pixel the mean of ``supersample^2`` point samples."""
    x, y = geometry.pixel_centres(dtype=dtype)
    offsets = ((torch.arange(supersample, dtype=dtype) + 0.5) / supersample - 0.5) * geometry.pixel_size
    image = torch.zeros(geometry.shape, dtype=dtype)
    for dy in offsets:
        for dx in offsets:
            image = image + ellipse_points(ellipses, x + dx, y + dy)
    return image / supersample**2


def ellipse_points(ellipses: Sequence[Ellipse], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The phantom's value at the points ``(x, y)``."""
    total = torch.zeros_like(x)
    for value, a, b, x0, y0, phi in ellipses:
        u = (x - x0) * math.cos(phi) + (y - y0) * math.sin(phi)
        v = -(x - x0) * math.sin(phi) + (y - y0) * math.cos(phi)
        total = total + value * ((u / a) ** 2 + (v / b) ** 2 <= 1)
    return total
