"""Low-dose CT simulation by noise insertion in the projection domain, and its calibration in HU.

Counts: a reading of the line integral ``p`` at full dose has mean ``lambda = N exp(-p)`` and variance
``lambda + sigma_e^2`` (Poisson photons plus electronic noise of variance ``sigma_e^2`` photons^2), ``N`` the
photons per reading. ``I0`` is defined physically (:func:`photons_per_reading`): the photons per reading of a
detector sample ``REFERENCE_PITCH`` mm wide at the isocentre in a scan of ``REFERENCE_VIEWS`` views
(:mod:`medsr.ct.geometry`), so ``N = I0 (pitch / REFERENCE_PITCH) (REFERENCE_VIEWS / n_views)``: the same ``I0``
is the same dose (photons through the slice) in every geometry and at every pixel size.

Two models, both adding only noise to the image (``x_ld = x + FBP(p_ld - p)`` in HU, one FBP of the difference;
re-projecting and reconstructing the image would lose resolution and add the projector's discretisation error):

* Real full-dose input (the default; Yu et al., "Development and validation of a practical lower-dose-simulation
  tool for optimizing computed tomography scan protocols", J. Comput. Assist. Tomogr. 36(4), 2012, and Zeng et
  al., "A simple low-dose x-ray CT simulation from high-dose scan", IEEE Trans. Nucl. Sci. 62(5), 2015): the
  image already carries the full-dose noise, so only the difference is inserted. A reading at dose ``d`` has
  mean ``d lambda`` and variance ``d lambda + sigma_e^2``; ``d`` times the full-dose reading has variance
  ``d^2 (lambda + sigma_e^2)``, so the inserted count noise has variance
  ``d (1 - d) lambda + (1 - d^2) sigma_e^2`` (the second term is the electronic-noise correction):
  ``y = d lambda + sqrt(d (1 - d) lambda + (1 - d^2) sigma_e^2) z``, ``p_ld = p - ln(max(y, eps) / (d lambda))``,
  ``z`` standard normal. Per ray the inserted variance is ``(1/d - 1) / lambda + (1/d^2 - 1) sigma_e^2 /
  lambda^2``: ``(1/d - 1)`` times the full dose's photon noise. ``lambda`` comes from the re-projected image
  (its own noise is averaged out along each line).
* Noise-free input (phantoms, synthetic images; ``noise_free_input=True``): the whole low-dose scan is
  simulated, ``y = Poisson(d lambda) + N(0, sigma_e^2)``, ``p_ld = -ln(max(y, eps) / (d N))``.

Attenuation: ``mu = MU_WATER (1 + HU / 1000)`` clamped at zero (air at -1024 HU would otherwise be negative);
values below ``AIR_HU`` (padding outside the scanner's field of view) are left unchanged. ``eps`` is one photon.
:func:`calibrate_i0` states the noise level in HU on a 30 cm water cylinder instead of ``I0``.

Random numbers are drawn on the CPU from the given generator, so results depend only on the seed (not on the
device); the projector and FBP run on the device of the image.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from medsr.ct.fbp import fbp
from medsr.ct.geometry import REFERENCE_PITCH, REFERENCE_VIEWS, Geometry
from medsr.ct.phantom import ellipse_sinogram, water_cylinder
from medsr.ct.projector import forward_project
from medsr.ct.units import AIR_HU, MU_WATER, hu_to_mu

DEFAULT_ROI_RADIUS = 40.0  # mm, the central ROI of the water cylinder
CALIBRATION_SAMPLES = 50_000  # ROI pixels over all noise realisations
MAX_REALISATIONS = 16
SECOND_ORDER = 1.5  # Var(ln y) = 1 / lambda + 1.5 / lambda^2 + ... for Poisson y of mean lambda
# The range the simulation is accurate in. I0 (photons per reading at full dose, the module docstring's
# definition) at least 1e3 at the simulated dose: 1e3 photons leave about 3 behind 30 cm of water (exp(-5.76)),
# where the log's bias is about 10 HU in the body (measured: +9 HU, 20 cm disc, dose 0.01 at I0 1e5); far
# fewer shift the mean by hundreds to thousands of HU (dose 1e-9: -1,984 HU). At most 1e9 (0.2 HU water noise,
# far below any scanner; torch.poisson breaks down above about 1e15, I0 1e20 gave -9,766 HU). The dose at least
# 0.01 (the lowest that the default I0 of 1e5 keeps in range; lower doses are no clinical protocol).
MIN_DOSE = 0.01
I0_RANGE = (1e3, 1e9)


def _check(dose: float, i0: float, electronic_noise: float) -> None:
    if not MIN_DOSE <= dose <= 1:
        raise ValueError(f"dose must be in [{MIN_DOSE}, 1], got {dose}")
    if not i0 > 0:
        raise ValueError(f"I0 must be positive, got {i0}")
    if not electronic_noise >= 0:
        raise ValueError(f"electronic noise variance must be >= 0, got {electronic_noise}")


def photons_per_reading(i0: float, geometry: Geometry) -> float:
    """Photons per reading ``N`` of ``geometry`` for the physical ``I0`` of the module docstring."""
    return i0 * geometry.pitch_at_isocentre / REFERENCE_PITCH * REFERENCE_VIEWS / geometry.n_views


def attenuation(hu: torch.Tensor) -> torch.Tensor:
    """Linear attenuation (1/mm) of HU images for the projection, never negative."""
    return torch.clamp(hu_to_mu(hu), min=0)


def _counts(p: torch.Tensor, n: float) -> torch.Tensor:
    return n * torch.exp(-p.detach().to("cpu", torch.float64))


def noisy_projections(p: torch.Tensor, dose: float, photons: float, electronic_noise: float = 0.0,
                      generator: torch.Generator | None = None, eps: float = 1.0) -> torch.Tensor:
    """Low-dose line integrals of a noise-free scan (``photons`` per reading at full dose), same shape and device
    as ``p``."""
    _check(dose, photons, electronic_noise)
    counts = dose * _counts(p, photons)
    y = torch.poisson(counts, generator=generator)
    if electronic_noise > 0:
        y = y + math.sqrt(electronic_noise) * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    p_ld = -torch.log(torch.clamp(y, min=eps) / (dose * photons))
    return p_ld.to(p.device, p.dtype)


def inserted_noise(p: torch.Tensor, dose: float, photons: float, electronic_noise: float = 0.0,
                   generator: torch.Generator | None = None, eps: float = 1.0) -> torch.Tensor:
    """``p_ld - p`` for a real full-dose scan (Yu/Zeng insertion of the module docstring), same shape and
    device as ``p``."""
    _check(dose, photons, electronic_noise)
    mean = dose * _counts(p, photons)
    std = torch.sqrt((1 - dose) * mean + (1 - dose * dose) * electronic_noise)
    y = mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    return (-torch.log(torch.clamp(y, min=eps) / mean)).to(p.device, p.dtype)


def projection_noise(p: torch.Tensor, dose: float, photons: float, electronic_noise: float,
                     generator: torch.Generator | None, noise_free_input: bool) -> torch.Tensor:
    """``p_ld - p`` by the model that ``noise_free_input`` selects."""
    if noise_free_input:
        return noisy_projections(p, dose, photons, electronic_noise, generator) - p
    return inserted_noise(p, dose, photons, electronic_noise, generator)


def simulate_low_dose(hu: torch.Tensor, geometry: Geometry, dose: float, i0: float, electronic_noise: float = 0.0,
                      filter_name: str = "hann", generator: torch.Generator | Sequence[torch.Generator] | None = None,
                      noise_free_input: bool = False) -> torch.Tensor:
    """Low-dose version of HU images ``[..., H, W]`` (same shape, HU), projected and reconstructed as one batch;
    ``generator`` may be a sequence of one generator per image."""
    padding = hu < AIR_HU
    p = forward_project(attenuation(hu), geometry)
    photons = photons_per_reading(i0, geometry)
    if isinstance(generator, Sequence):
        views = p.reshape(-1, *p.shape[-2:])
        if len(generator) != views.shape[0]:
            raise ValueError(f"{len(generator)} generators for {views.shape[0]} images")
        noise = torch.stack([projection_noise(v, dose, photons, electronic_noise, g, noise_free_input)
                             for v, g in zip(views, generator)]).reshape(p.shape)
    else:
        noise = projection_noise(p, dose, photons, electronic_noise, generator, noise_free_input)
    return torch.where(padding, hu, hu + fbp(noise, geometry, filter_name) * (1000 / MU_WATER))


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
    ``CALIBRATION_SAMPLES`` ROI pixels in all, within 4 to ``MAX_REALISATIONS``)."""
    small = roi_geometry(geometry, roi_radius)
    if realisations is None:
        pixels = int(central_disc(small, roi_radius).sum())
        realisations = min(MAX_REALISATIONS, max(4, math.ceil(CALIBRATION_SAMPLES / pixels)))
    return small, ellipse_sinogram(water_cylinder(), small, torch.float32).expand(realisations, -1, -1)


def water_noise_hu(geometry: Geometry, i0: float, dose: float = 1.0, electronic_noise: float = 0.0,
                   filter_name: str = "hann", roi_radius: float = DEFAULT_ROI_RADIUS,
                   realisations: int | None = None, seed: int = 0) -> float:
    """Noise standard deviation (HU) of a scan at ``dose`` (Poisson simulation of the noise-free cylinder) in the
    central ROI of a 30 cm water cylinder in ``geometry`` (exact projections, so no projector error; only the ROI
    is reconstructed)."""
    small, p = _water(geometry, roi_radius, realisations)
    generator = torch.Generator().manual_seed(seed)
    noise = noisy_projections(p, dose, photons_per_reading(i0, geometry), electronic_noise, generator) - p
    return math.sqrt(_roi_variance(noise, small, filter_name, roi_radius))


@dataclass(frozen=True)
class NoiseTerms:
    """ROI noise variance of the water cylinder to second order in ``1 / lambda`` (delta method):
    ``Var(p_ld) = 1 / lambda + (sigma_e^2 + 1.5) / lambda^2`` per ray, ``lambda = d N exp(-p)`` with
    ``N = photons_per_reading * I0``, so ``Var(ROI) = photon / (d N) + electronic (sigma_e^2 + 1.5) / (d N)^2``
    (HU^2), ``photon`` and ``electronic`` the ROI variances of the FBP of white noise weighted by ``exp(p / 2)``
    and ``exp(p)``. (The 1.5 is the Poisson log's second-order term; the first-order model alone underestimates
    the noise by several percent behind 30 cm of water at a quarter dose.)"""

    photon: float
    electronic: float
    photons_per_i0: float = 1.0

    def noise_hu(self, i0: float, dose: float = 1.0, electronic_noise: float = 0.0) -> float:
        u = 1 / (dose * i0 * self.photons_per_i0)
        return math.sqrt(self.photon * u + self.electronic * (electronic_noise + SECOND_ORDER) * u * u)

    def i0_for(self, target_hu_noise: float, dose: float = 1.0, electronic_noise: float = 0.0) -> float:
        """The ``I0`` at which :meth:`noise_hu` equals ``target_hu_noise`` (a quadratic in ``1 / (d N)``)."""
        t2 = target_hu_noise**2
        quadratic = self.electronic * (electronic_noise + SECOND_ORDER)
        u = t2 / self.photon if quadratic == 0 else (
            (math.sqrt(self.photon**2 + 4 * quadratic * t2) - self.photon) / (2 * quadratic))
        return 1 / (dose * u * self.photons_per_i0)


def noise_terms(geometry: Geometry, filter_name: str = "hann", roi_radius: float = DEFAULT_ROI_RADIUS,
                seed: int = 0) -> NoiseTerms:
    """:class:`NoiseTerms` of ``geometry`` and ``filter_name``, from ``CALIBRATION_SAMPLES`` ROI pixels of white
    Gaussian noise (about 1% sampling error on the standard deviation)."""
    small, p = _water(geometry, roi_radius, None)
    normal = torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=p.dtype)
    return NoiseTerms(_roi_variance(normal * torch.exp(p / 2), small, filter_name, roi_radius),
                      _roi_variance(normal * torch.exp(p), small, filter_name, roi_radius),
                      photons_per_reading(1.0, geometry))


def calibrate_i0(target_hu_noise: float, geometry: Geometry, filter_name: str = "hann", dose: float = 1.0,
                 electronic_noise: float = 0.0, roi_radius: float = DEFAULT_ROI_RADIUS, seed: int = 0) -> float:
    """The full-dose ``I0`` for which a scan at ``dose`` of the 30 cm water cylinder has ``target_hu_noise`` HU
    noise in its central ROI. The first-order noise model is solved in closed form instead of bisecting on
    ``log I0``; it matches the Poisson simulation where the counts behind the cylinder are not tiny (more than
    about 20 photons per reading; checked at the target dose by the tests and by ``medsr degrade``)."""
    if not target_hu_noise > 0:
        raise ValueError(f"target HU noise must be positive, got {target_hu_noise}")
    _check(dose, 1.0, electronic_noise)
    return noise_terms(geometry, filter_name, roi_radius, seed).i0_for(target_hu_noise, dose, electronic_noise)
