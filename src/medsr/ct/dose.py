"""Low-dose CT simulation by noise insertion in the projection domain, and its calibration in HU.

Model (Zeng et al., "A simple low-dose x-ray CT simulation from high-dose scan", IEEE Trans. Nucl. Sci. 62(5),
2015): for the dose fraction ``d`` and ``I0`` incident photons per detector reading at full dose, each line
integral ``p`` becomes

    y = Poisson(d I0 exp(-p)) + N(0, sigma_e^2),    p_ld = -ln(max(y, eps) / (d I0)),

``sigma_e^2`` the electronic-noise variance (in photons^2) and ``eps`` (default one photon) the floor for
non-positive readings. Only the simulated noise enters the image: ``x_ld = x + FBP(p_ld) - FBP(p)`` (one FBP of
``p_ld - p``, FBP being linear). Reconstructing ``p_ld`` alone would replace the image by a re-projected,
re-reconstructed one, which loses resolution (interpolation in projection and backprojection) and adds the
discretisation errors of the projector; the difference keeps every detail of ``x``.

Caveats: ``p`` is the projection of the given (full-dose, already noisy) image, so its own noise stays in
``x_ld``; ``I0`` is photons per reading of the simulated geometry (views and detector bins of
:mod:`medsr.ct.geometry`), so the same ``I0`` gives other HU noise in another geometry or with another filter.
:func:`calibrate_i0` therefore states the noise level in HU on a 30 cm water cylinder instead.

Random numbers are drawn on the CPU from the given generator, so results depend only on the seed (not on the
device).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from medsr.ct.fbp import fbp
from medsr.ct.geometry import Geometry
from medsr.ct.phantom import ellipse_sinogram, water_cylinder
from medsr.ct.projector import forward_project
from medsr.ct.units import AIR_HU, MU_WATER, hu_to_mu, mu_to_hu

DEFAULT_ROI_RADIUS = 40.0  # mm, the central ROI of the water cylinder
CALIBRATION_SAMPLES = 50_000  # ROI pixels over all noise realisations


def _check(dose: float, i0: float, electronic_noise: float) -> None:
    if not 0 < dose <= 1:
        raise ValueError(f"dose must be in (0, 1], got {dose}")
    if not i0 > 0:
        raise ValueError(f"I0 must be positive, got {i0}")
    if not electronic_noise >= 0:
        raise ValueError(f"electronic noise variance must be >= 0, got {electronic_noise}")


def noisy_projections(p: torch.Tensor, dose: float, i0: float, electronic_noise: float = 0.0,
                      generator: torch.Generator | None = None, eps: float = 1.0) -> torch.Tensor:
    """Low-dose line integrals ``p_ld`` (same shape and device as ``p``) by the model above."""
    _check(dose, i0, electronic_noise)
    counts = dose * i0 * torch.exp(-p.detach().to("cpu", torch.float64))
    y = torch.poisson(counts, generator=generator)
    if electronic_noise > 0:
        y = y + math.sqrt(electronic_noise) * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    p_ld = -torch.log(torch.clamp(y, min=eps) / (dose * i0))
    return p_ld.to(p.device, p.dtype)


def simulate_low_dose(hu: torch.Tensor, geometry: Geometry, dose: float, i0: float, electronic_noise: float = 0.0,
                      filter_name: str = "hann", generator: torch.Generator | None = None) -> torch.Tensor:
    """Low-dose version of HU images ``[..., H, W]`` (same shape, HU).

    Values below ``AIR_HU`` (-1024, e.g. -2000 or -3024 padding outside the scanner's field of view) are set to
    ``AIR_HU`` for the simulation and restored afterwards.
    """
    padding = hu < AIR_HU
    mu = hu_to_mu(torch.clamp(hu, min=AIR_HU))
    p = forward_project(mu, geometry)
    noise = fbp(noisy_projections(p, dose, i0, electronic_noise, generator) - p, geometry, filter_name)
    return torch.where(padding, hu, mu_to_hu(mu + noise))


def roi_geometry(geometry: Geometry, roi_radius: float) -> Geometry:
    """``geometry`` reconstructing only a square grid around the central disc of ``roi_radius`` mm."""
    side = 2 * math.ceil(roi_radius / geometry.pixel_size) + 1
    return dataclasses.replace(geometry, shape=(side, side))


def central_disc(geometry: Geometry, roi_radius: float) -> torch.Tensor:
    """Boolean ``[H, W]`` mask of the pixels whose centres lie within ``roi_radius`` mm of the image centre."""
    x, y = geometry.pixel_centres(dtype=torch.float64)
    return x**2 + y**2 <= roi_radius**2


def _roi_variance(noise: torch.Tensor, small: Geometry, filter_name: str, roi_radius: float) -> float:
    """Mean over realisations of the ROI variance (HU^2) of the FBP of projection noise ``[R, V, n_det]``."""
    image = fbp(noise, small, filter_name)[:, central_disc(small, roi_radius)] * (1000 / MU_WATER)
    return float(image.var(dim=1).mean())


def _water(geometry: Geometry, roi_radius: float, realisations: int | None) -> tuple[Geometry, torch.Tensor]:
    """The ROI geometry and the exact water-cylinder sinogram repeated ``[R, V, n_det]`` (by default ``R`` makes
    ``CALIBRATION_SAMPLES`` ROI pixels in all)."""
    small = roi_geometry(geometry, roi_radius)
    if realisations is None:
        realisations = max(4, math.ceil(CALIBRATION_SAMPLES / int(central_disc(small, roi_radius).sum())))
    return small, ellipse_sinogram(water_cylinder(), small, torch.float32).expand(realisations, -1, -1)


def water_noise_hu(geometry: Geometry, i0: float, dose: float = 1.0, electronic_noise: float = 0.0,
                   filter_name: str = "hann", roi_radius: float = DEFAULT_ROI_RADIUS,
                   realisations: int | None = None, seed: int = 0) -> float:
    """Noise standard deviation (HU) of the simulation in the central ROI of a 30 cm water cylinder scanned in
    ``geometry`` (exact projections, so no projector error; only the ROI is reconstructed)."""
    small, p = _water(geometry, roi_radius, realisations)
    generator = torch.Generator().manual_seed(seed)
    noise = noisy_projections(p, dose, i0, electronic_noise, generator) - p
    return math.sqrt(_roi_variance(noise, small, filter_name, roi_radius))


@dataclass(frozen=True)
class NoiseTerms:
    """First-order (delta-method) ROI noise variance of the water cylinder: ``Var(p_ld) = 1 / lambda +
    sigma_e^2 / lambda^2`` per ray, ``lambda = d I0 exp(-p)``, so ``Var(ROI) = photon / (d I0) + electronic
    sigma_e^2 / (d I0)^2`` (HU^2), ``photon`` and ``electronic`` the ROI variances of the FBP of white noise
    weighted by ``exp(p / 2)`` and ``exp(p)``."""

    photon: float
    electronic: float

    def noise_hu(self, i0: float, dose: float = 1.0, electronic_noise: float = 0.0) -> float:
        u = 1 / (dose * i0)
        return math.sqrt(self.photon * u + self.electronic * electronic_noise * u * u)

    def i0_for(self, target_hu_noise: float, dose: float = 1.0, electronic_noise: float = 0.0) -> float:
        """The ``I0`` at which :meth:`noise_hu` equals ``target_hu_noise`` (a quadratic in ``1 / (d I0)``)."""
        t2 = target_hu_noise**2
        quadratic = self.electronic * electronic_noise
        u = t2 / self.photon if quadratic == 0 else (
            (math.sqrt(self.photon**2 + 4 * quadratic * t2) - self.photon) / (2 * quadratic))
        return 1 / (dose * u)


def noise_terms(geometry: Geometry, filter_name: str = "hann", roi_radius: float = DEFAULT_ROI_RADIUS,
                seed: int = 0) -> NoiseTerms:
    """:class:`NoiseTerms` of ``geometry`` and ``filter_name``, from ``CALIBRATION_SAMPLES`` ROI pixels of white
    Gaussian noise (about 1% sampling error on the standard deviation)."""
    small, p = _water(geometry, roi_radius, None)
    normal = torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=p.dtype)
    return NoiseTerms(_roi_variance(normal * torch.exp(p / 2), small, filter_name, roi_radius),
                      _roi_variance(normal * torch.exp(p), small, filter_name, roi_radius))


def calibrate_i0(target_hu_noise: float, geometry: Geometry, filter_name: str = "hann", dose: float = 1.0,
                 electronic_noise: float = 0.0, roi_radius: float = DEFAULT_ROI_RADIUS, seed: int = 0) -> float:
    """The full-dose ``I0`` for which a scan at ``dose`` of the 30 cm water cylinder has ``target_hu_noise`` HU
    noise in its central ROI. The first-order noise model is solved in closed form instead of bisecting on
    ``log I0``; it matches the Poisson simulation where the counts behind the cylinder are not tiny (more than
    about 20 photons per reading)."""
    if not target_hu_noise > 0:
        raise ValueError(f"target HU noise must be positive, got {target_hu_noise}")
    _check(dose, 1.0, electronic_noise)
    return noise_terms(geometry, filter_name, roi_radius, seed).i0_for(target_hu_noise, dose, electronic_noise)
