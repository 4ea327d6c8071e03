"""Noise power spectrum (PSD) and noise level of correlated noise, from a known noise image or from an image's own
flat regions.

Why not the usual blind estimate: the wavelet MAD of Donoho & Johnstone (Biometrika 81(3), 1994) reads the noise
level off the finest diagonal wavelet band, which holds the noise of white noise only. FBP noise is correlated (the
ramp filter times the apodisation window leaves little energy at the highest frequencies), so MAD misses most of it.
Here the whole PSD is measured instead, in square patches of the image:

* **Flat patches.** Patches lying wholly inside ``valid`` (for CT: soft tissue and fat, :func:`tissue_mask`) on a
  half-overlapping grid, each with its least-squares plane removed. A patch of pure noise has the noise's spectral
  shape, whatever its local noise level (FBP noise is not stationary): little power at low frequencies, where
  anatomy has most. So each patch is scored by its low- over high-frequency power (:func:`band_ratio`); the scores
  form a cluster of noise-only patches (the lowest) and a tail of patches with structure; the cluster is found by
  the fixed point ``s = median{r : r <= ratio s}`` started from the lower quartile, and its patches are kept. It
  needs noise that is strong against the anatomy's fine detail, as at a CT's native resolution; on strongly
  downsampled images (e.g. 512 -> 128 pixels) structure dominates every patch and the estimate fails.
* **PSD.** Welch's method (IEEE Trans. Audio Electroacoust. 15(2), 1967): the mean periodogram of the Hann-windowed
  patches, zero-padded so that it holds the windowed autocovariance without wrap-around. The window's own
  autocorrelation is divided out at lags below half the patch (the lag-window correction: the autocovariance of
  the noise, not of the windowed noise), and the lags are folded onto a ``size x size`` DFT grid.

A PSD here is a ``[size, size]`` float64 array on the DFT frequencies whose inverse DFT is the noise
autocovariance at lags below ``size / 2``; its mean is the noise variance. The same estimator applied to a known
noise image (:func:`psd_of_noise`, e.g. a simulator's noise) gives the reference PSD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MIN_PATCHES = 4
TISSUE_HU = (-300.0, 300.0)  # soft tissue and fat; lung, air, bone and metal excluded


def default_patch(shape: tuple[int, ...]) -> int:
    """32-pixel patches, 16 for images under 256 pixels a side."""
    return 32 if min(shape[-2:]) >= 256 else 16


def tissue_mask(hu: torch.Tensor, low: float = TISSUE_HU[0], high: float = TISSUE_HU[1]) -> torch.Tensor:
    """Pixels of CT images ``[..., H, W]`` in HU whose 5x5 mean lies in ``[low, high]`` (the mean keeps noise from
    deciding)."""
    flat = hu.double().reshape(-1, 1, *hu.shape[-2:])
    mean = F.avg_pool2d(flat, 5, stride=1, padding=2, count_include_pad=False).reshape(hu.shape)
    return (mean >= low) & (mean <= high)


def _window(size: int) -> torch.Tensor:
    w = torch.hann_window(size + 2, periodic=False, dtype=torch.float64)[1:-1]
    return w[:, None] * w[None, :]


def _patches(image: torch.Tensor, size: int, valid: torch.Tensor | None) -> torch.Tensor:
    """``[N, size, size]`` patches of the images ``[..., H, W]`` on a grid of stride ``size / 2``, those wholly in
    ``valid`` (same shape as ``image``)."""
    def unfold(x: torch.Tensor) -> torch.Tensor:  # [images * positions, size * size]
        x = x.to(torch.float64).reshape(-1, 1, *x.shape[-2:])
        return F.unfold(x, size, stride=size // 2).transpose(1, 2).reshape(-1, size * size)

    p = unfold(image).reshape(-1, size, size)
    if valid is not None:
        p = p[unfold(valid).min(dim=1).values > 0]
    return p


def _detrend(p: torch.Tensor) -> torch.Tensor:
    """Each patch minus its least-squares plane."""
    size = p.shape[-1]
    c = torch.arange(size, dtype=p.dtype) - (size - 1) / 2
    basis = torch.stack([torch.ones(size, size, dtype=p.dtype), c[:, None].expand(size, size),
                         c[None, :].expand(size, size)])
    coef = torch.einsum("nij,kij->nk", p, basis) / (basis**2).sum(dim=(1, 2))
    return p - torch.einsum("nk,kij->nij", coef, basis)


def band_ratio(p: torch.Tensor, low: float = 0.125, high: float = 0.25) -> torch.Tensor:
    """Per patch, the power of its Hann-windowed, detrended periodogram at radial frequencies up to ``low`` cycles
    per pixel over the power above ``high``."""
    size = p.shape[-1]
    power = torch.fft.fft2(_detrend(p) * _window(size)).abs() ** 2
    f = torch.fft.fftfreq(size, dtype=torch.float64)
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    return power[:, radius <= low].sum(dim=1) / power[:, radius > high].sum(dim=1).clamp(min=1e-30)


def psd_from_patches(p: torch.Tensor) -> torch.Tensor:
    """The PSD (module docstring) of the noise in patches ``[N, size, size]`` (``size`` even)."""
    size = p.shape[-1]
    w = _window(size)
    spectrum = (torch.fft.fft2(_detrend(p) * w, s=(2 * size, 2 * size)).abs() ** 2).mean(dim=0)
    autocov = torch.fft.ifft2(spectrum).real / (w**2).sum()
    window_corr = torch.fft.ifft2(torch.fft.fft2(w, s=(2 * size, 2 * size)).abs() ** 2).real / (w**2).sum()
    lags = torch.arange(-(size // 2) + 1, size // 2)
    wide, narrow = lags % (2 * size), lags % size
    folded = torch.zeros(size, size, dtype=torch.float64)
    folded[narrow[:, None], narrow[None, :]] = (autocov / window_corr)[wide[:, None], wide[None, :]]
    return torch.fft.fft2(folded).real.clamp(min=0)


def _enough_patches(image: torch.Tensor, size: int | None, valid: torch.Tensor | None) -> torch.Tensor:
    """:func:`_patches` (``size`` None: :func:`default_patch`), or ``ValueError`` when fewer than
    :data:`MIN_PATCHES`."""
    size = size or default_patch(image.shape)
    p = _patches(image, size, valid)
    if len(p) < MIN_PATCHES:
        raise ValueError(f"{len(p)} patches of {size}x{size} pixels inside the region; at least {MIN_PATCHES} "
                         "needed to measure the noise")
    return p


def psd_of_noise(noise: torch.Tensor, size: int | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The PSD of known noise images ``[..., H, W]`` (e.g. low dose minus full dose), from all their patches inside
    ``valid``."""
    return psd_from_patches(_enough_patches(noise, size, valid))


@dataclass(frozen=True)
class NoiseEstimate:
    psd: torch.Tensor  # [size, size], float64; mean = noise variance
    patches: int  # flat patches used
    candidates: int  # patches inside the valid region

    @property
    def std(self) -> float:
        return math.sqrt(float(self.psd.mean()))


def estimate_noise(image: torch.Tensor, size: int | None = None, valid: torch.Tensor | None = None,
                   ratio: float = 2.0, iterations: int = 50) -> NoiseEstimate:
    """The noise PSD of images ``[..., H, W]`` (one noise for all) from their flat patches (module docstring).
    Raises ``ValueError`` when fewer than :data:`MIN_PATCHES` patches lie inside ``valid``."""
    p = _enough_patches(image, size, valid)
    score = band_ratio(p)
    level = score.quantile(0.25)
    for _ in range(iterations):
        new = score[score <= ratio * level].median()
        if new == level:
            break
        level = new
    keep = score <= ratio * level
    return NoiseEstimate(psd_from_patches(p[keep]), int(keep.sum()), len(p))
