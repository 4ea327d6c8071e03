"""Do-no-harm check of ``medsr denoise``: the method noise on the user's own scan.

A denoiser's output ``u`` of an input ``v`` removes the residual ``r = v - u``; Buades, Coll & Morel ("A review of
image denoising algorithms, with a new one", Multiscale Model. Simul. 4(2), 2005) call it the *method noise* and ask
that it look like noise: a denoiser that removes anatomy leaves the anatomy's edges and shapes in ``r``. Two
measurements on up to :data:`SLICES` evenly spaced slices (in HU; pixels of soft tissue and fat,
:func:`medsr.classical.noise.tissue_mask` of the input):

* **Edge excess** (structure): the residual's local energy (``r^2`` averaged over a ``2 SCALE_MM`` box) at the
  :data:`EDGE_QUANTILE` strongest edges of the soft tissue minus that at its weaker half, in units of the input's
  estimated noise variance; edge strength is the gradient magnitude of the input averaged over a ``SCALE_MM`` box
  (which keeps the noise from deciding, and does not depend on the method). A denoiser that removes noise and keeps
  edges removes as much or *less* at edges (excess near zero or negative); a blur removes anatomy there (large
  positive). A correlation coefficient between the two maps, the first candidate, does not separate: it ignores
  how much is removed (the shipped weights, removing 3 HU, scored 0.29 on the held-out head, a 0.7 mm blur 0.35 on
  the head); the excess is scaled by the noise, so a faint structured residual does not fail.
* **Spectrum**: the residual's noise power spectrum (:func:`medsr.classical.noise.psd_of_noise` over the soft
  tissue) over the input's noise PSD (:func:`medsr.classical.noise.estimate_noise`, its flat patches), at radial
  frequencies below :data:`LOW_BAND` cycles per pixel. FBP noise has little power there and anatomy most, so a
  residual with more low-frequency power than the noise itself holds anatomy (over-smoothing of large structures).

It also reports the noise level removed (the HU standard deviation of ``r`` in the water-equivalent region of
:func:`medsr.ct.water_region.water_region`, found on the input) beside the input's estimated noise level.

Thresholds (``benchmarks/method_noise.py``, results in ``benchmarks/results/ct/method_noise.md``): measured on
single 512x512 slices of the embedded real CT (head, abdomen) at simulated doses 0.25 and 0.1
(:func:`medsr.ct.dose.simulate_low_dose` with the embedded data's I0, electronic noise and filter), checked on the
held-out head. Edge excess: BM3D-style, NLM at the tuned h and the shipped weights at most 0.33 noise variances
(BM3D-style 0.53 on a 92 mm crop of the head, ``tests/test_denoise_check.py``: FBP noise is stronger next to bone);
NLM with h 10x the tuned one at least 1.51, Gaussian blurs of 1.5 and 3 mm at least 4.05, of 0.7 mm 0.60 to 59
(this mild blur passes on the abdomen at dose 0.1 and fails elsewhere); limit :data:`EDGE_EXCESS_LIMIT`. Low band: the good ones at most 0.59, NLM with h 10x at least 1.10 (blurs fail on the
edge excess, mostly not here: they remove high frequencies); limit :data:`LOW_BAND_LIMIT` (a residual with more
low-frequency power than the noise itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medsr.classical.noise import estimate_noise, psd_of_noise, tissue_mask
from medsr.ct.water_region import water_region
from medsr.errors import InputError
from medsr.infer.selftest import evenly

SLICES = 4
SCALE_MM = 1.0
EDGE_QUANTILE = 0.1
LOW_BAND = 0.08  # cycles per pixel
EDGE_EXCESS_LIMIT = 1.0  # noise variances
LOW_BAND_LIMIT = 1.0


def _box(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of images ``[N, H, W]`` over ``size x size`` boxes (odd ``size``), shrunk at the borders."""
    return F.avg_pool2d(x[:, None], size, 1, size // 2, count_include_pad=False)[:, 0]


def _odd(mm: float, pixel_mm: float) -> int:
    return max(3, 2 * math.floor(mm / pixel_mm / 2) + 1)


def edge_strength(hu: torch.Tensor, pixel_mm: float) -> torch.Tensor:
    """Gradient magnitude (central differences, per pixel) of images ``[N, H, W]`` averaged over
    ``SCALE_MM`` boxes."""
    x = _box(hu, _odd(SCALE_MM, pixel_mm))
    gy, gx = torch.zeros_like(x), torch.zeros_like(x)
    gy[:, 1:-1] = (x[:, 2:] - x[:, :-2]) / 2
    gx[:, :, 1:-1] = (x[:, :, 2:] - x[:, :, :-2]) / 2
    return torch.sqrt(gx * gx + gy * gy)


def edge_excess(energy: torch.Tensor, edges: torch.Tensor, variance: float) -> float:
    """Mean ``energy`` where ``edges`` is in its top :data:`EDGE_QUANTILE` minus the mean where it is at most its
    median, over ``variance`` (equally long samples)."""
    strong = edges >= edges.quantile(1 - EDGE_QUANTILE)
    weak = edges <= edges.median()
    return (float(energy[strong].mean()) - float(energy[weak].mean())) / max(variance, 1e-30)


def low_band_ratio(residual_psd: torch.Tensor, noise_psd: torch.Tensor) -> float:
    """Mean power of ``residual_psd`` over that of ``noise_psd`` (same DFT grid) below :data:`LOW_BAND`."""
    f = torch.fft.fftfreq(noise_psd.shape[0], dtype=torch.float64)
    low = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2) < LOW_BAND
    return float(residual_psd[low].mean()) / max(float(noise_psd[low].mean()), 1e-30)


@dataclass(frozen=True)
class MethodNoise:
    """The measurements of the module docstring (HU standard deviations; ``slices`` of ``total`` used)."""

    removed: float
    noise: float
    edge_excess: float
    low_band: float
    slices: int
    total: int

    @property
    def structured(self) -> bool:
        return self.edge_excess > EDGE_EXCESS_LIMIT

    @property
    def smooths(self) -> bool:
        return self.low_band > LOW_BAND_LIMIT

    @property
    def fails(self) -> bool:
        return self.structured or self.smooths

    def line(self) -> str:
        verdict = "removes anatomy, not only noise" if self.fails else "looks like noise"
        return (f"method-noise check: removed {self.removed:.1f} HU of an estimated {self.noise:.1f} HU noise "
                f"({self.slices} of {self.total} slices); residual at edges {self.edge_excess:+.2f} noise variances "
                f"(limit {EDGE_EXCESS_LIMIT:g}); low-frequency residual/noise power {self.low_band:.2f} (limit "
                f"{LOW_BAND_LIMIT:g}): {verdict}")

    def warning(self) -> str:
        why = []
        if self.structured:
            why.append("the removed residual follows the image's edges")
        if self.smooths:
            why.append("it holds more low-frequency power than the noise")
        return (f"{' and '.join(why)} (method-noise check): the denoiser removes anatomy; compare the output with "
                "the input, or try another --method")


def measure(hu: torch.Tensor, out: torch.Tensor, pixel_mm: float) -> MethodNoise:
    """The method noise of denoising slices ``hu`` ``[N, H, W]`` (HU) into ``out``, on up to :data:`SLICES` of
    them; ``ValueError`` when it cannot be measured (too little soft tissue or too small slices)."""
    pick = torch.from_numpy(evenly(hu.shape[0], min(SLICES, hu.shape[0])))
    v, u = hu[pick].double(), torch.as_tensor(out)[pick].double()
    r = v - u
    tissue = tissue_mask(v)
    noise = estimate_noise(v, valid=tissue)
    region = water_region(v, pixel_mm)
    if int(region.sum()) < 2:
        raise ValueError("no water-equivalent soft tissue to measure the removed noise in")
    energy = _box(r * r, _odd(2 * SCALE_MM, pixel_mm))
    return MethodNoise(
        removed=float(r[region].std()),
        noise=noise.std,
        edge_excess=edge_excess(energy[tissue], edge_strength(v, pixel_mm)[tissue], noise.std**2),
        low_band=low_band_ratio(psd_of_noise(r, size=noise.psd.shape[0], valid=tissue), noise.psd),
        slices=len(pick),
        total=hu.shape[0],
    )


def pixel_size(affine: np.ndarray) -> float:
    """The mean in-plane (voxel axes 0 and 1) spacing of ``affine``, mm."""
    return float(np.linalg.norm(np.asarray(affine)[:3, :2], axis=0).mean())


def check_method_noise(hu: torch.Tensor, out: torch.Tensor, affine: np.ndarray, strict: bool) -> tuple[str, list[str]]:
    """The note (the verdict line, or why the check was skipped) and the warnings of :func:`measure`; raises
    :class:`InputError` with ``strict`` when the check fails or cannot run (nothing is written)."""
    try:
        result = measure(hu, out, pixel_size(affine))
    except ValueError as err:
        if strict:
            raise InputError("--strict", f"the method-noise check could not run: {err}; nothing written") from None
        return f"method-noise check skipped: {err}", []
    if result.fails and strict:
        raise InputError("--strict", f"{result.line()}; nothing written")
    return result.line(), [result.warning()] if result.fails else []
