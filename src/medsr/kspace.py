"""Pure k-space functions: centred orthonormal FFTs, centre cropping at any scale, Cartesian masks, degradation.

Conventions
-----------
* Spectra are *centred*: index ``N // 2`` holds the DC term (``fftshift`` layout).
* Functions take torch tensors (real or complex) or numpy arrays; numpy in gives numpy out.
* FFTs always run in (complex) float32 or float64, never in half precision.
* Geometry: the low-resolution grid covers the same field of view as the high-resolution one, with pixel
  centres placed like ``torch.nn.functional.interpolate(..., align_corners=False)`` and
  :func:`medsr.io.nifti.resampled_affine`: HR pixel ``i`` sits at LR coordinate ``(i + 0.5) * n / N - 0.5``.
  A plain DFT crop keeps index ``N // 2`` on ``n // 2`` instead, which is up to half a pixel off that grid;
  :func:`downsample` removes the offset with a linear phase (exact for band-limited images), so bicubic,
  implicit decoders and affines all agree with the data.

Undersampling masks follow fastMRI's semantics (Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for
Accelerated MRI", 2018): a fully sampled centre of ``round(W * center_fraction)`` columns plus random or
equispaced columns so that the overall acceleration is ``R``. :class:`T2NetMask` counts columns instead, as the
mask files of T2Net do (Feng et al., "Task Transformer Network for Joint MRI Reconstruction and
Super-Resolution", MICCAI 2021). Masks are centred like the spectra: column ``W // 2`` is the DC column.
"""

from __future__ import annotations

import abc
import hashlib
import math
from typing import Sequence

import numpy as np
import torch

Array = torch.Tensor | np.ndarray
MAX_SCALE = 16.0


def _as_tensor(x: Array) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)), True
    return x, False


def _back(x: torch.Tensor, was_numpy: bool) -> Array:
    return x.numpy() if was_numpy else x


def _complex(x: torch.Tensor) -> torch.Tensor:
    if x.is_complex():
        return x if x.dtype in (torch.complex64, torch.complex128) else x.to(torch.complex64)
    return x.to(torch.float64 if x.dtype == torch.float64 else torch.float32).to(
        torch.complex128 if x.dtype == torch.float64 else torch.complex64
    )


def fft2c(x: Array) -> Array:
    """Centred, orthonormal 2-D FFT over the last two axes."""
    t, was_numpy = _as_tensor(x)
    t = _complex(t)
    k = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(t, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
    return _back(k, was_numpy)


def ifft2c(k: Array) -> Array:
    """Centred, orthonormal inverse 2-D FFT over the last two axes."""
    t, was_numpy = _as_tensor(k)
    t = _complex(t)
    x = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(t, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))
    return _back(x, was_numpy)


def check_scale(scale: float, name: str = "scale") -> float:
    """Return ``scale`` as a float if it is a finite number in [1, 16]; raise ``ValueError`` otherwise."""
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {scale!r}") from None
    if not math.isfinite(s) or s < 1.0 or s > MAX_SCALE:
        raise ValueError(f"{name} must be between 1 and {MAX_SCALE:g}, got {scale!r}")
    return s


def lr_length(n: int, scale: float) -> int:
    """Samples kept on an axis of ``n`` samples at ``scale``: ``round(n / scale)``, halves rounded up, >= 1."""
    return max(1, int(math.floor(n / check_scale(scale) + 0.5)))


def lr_shape(shape: Sequence[int], scale: float | Sequence[float]) -> tuple[int, int]:
    """Low-resolution in-plane shape for an image of ``shape[-2:]`` at ``scale`` (one value or (sy, sx))."""
    sy, sx = _pair(scale)
    return lr_length(int(shape[-2]), sy), lr_length(int(shape[-1]), sx)


def _pair(scale: float | Sequence[float]) -> tuple[float, float]:
    if np.ndim(scale) == 0:
        return float(scale), float(scale)
    sy, sx = scale
    return float(sy), float(sx)


def _window(big: int, small: int) -> slice:
    start = big // 2 - small // 2
    return slice(start, start + small)


def crop_kspace(k: Array, shape: Sequence[int]) -> Array:
    """Keep the central ``shape`` of a centred spectrum (index ``N // 2`` lands on ``n // 2``)."""
    t, was_numpy = _as_tensor(k)
    (H, W), (h, w) = t.shape[-2:], tuple(shape)
    if h > H or w > W:
        raise ValueError(f"cannot crop a {H}x{W} spectrum to {h}x{w}")
    return _back(t[..., _window(H, h), _window(W, w)], was_numpy)


def pad_kspace(k: Array, shape: Sequence[int]) -> Array:
    """Zero-pad a centred spectrum to ``shape``: the exact inverse of :func:`crop_kspace` on the kept band."""
    t, was_numpy = _as_tensor(k)
    (h, w), (H, W) = t.shape[-2:], tuple(shape)
    if h > H or w > W:
        raise ValueError(f"cannot pad a {h}x{w} spectrum to {H}x{W}")
    out = t.new_zeros(t.shape[:-2] + (H, W))
    out[..., _window(H, h), _window(W, w)] = t
    return _back(out, was_numpy)


def _alignment_phase(big: int, small: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Linear phase over a centred axis of ``big`` bins that moves the DFT-crop grid onto the pixel-centre grid."""
    delta = (small // 2 + 0.5) * big / small - 0.5 - big // 2
    k = torch.arange(big, device=device, dtype=torch.float64) - big // 2
    return torch.polar(torch.ones_like(k), 2 * math.pi * k * delta / big).to(dtype)


def _align(k: torch.Tensor, hr: tuple[int, int], lr: tuple[int, int], inverse: bool) -> torch.Tensor:
    py = _alignment_phase(hr[0], lr[0], k.device, k.dtype)
    px = _alignment_phase(hr[1], lr[1], k.device, k.dtype)
    phase = py[:, None] * px[None, :]
    return k * (phase.conj() if inverse else phase)


def downsample(
    image: Array,
    scale: float | Sequence[float] | None = None,
    *,
    size: Sequence[int] | None = None,
    magnitude: bool = True,
) -> Array:
    """Low-resolution image by keeping the centre of k-space (a band-limited, alias-free downsampling).

    Give ``scale`` (one value or ``(sy, sx)``; an axis of N samples keeps ``round(N / s)``) or ``size``.
    The mean intensity is preserved. The magnitude is taken only at the end, and only when ``magnitude``.
    """
    t, was_numpy = _as_tensor(image)
    lr = tuple(size) if size is not None else lr_shape(t.shape, scale)
    out = _crop_to_image(fft2c(t), lr)
    return _back(out.abs() if magnitude else out, was_numpy)


def _crop_to_image(k: torch.Tensor, lr: tuple[int, int], mask: np.ndarray | None = None) -> torch.Tensor:
    """Aligned centre crop of a centred HR spectrum to ``lr`` (then masked with an LR-grid ``mask``), back to an
    intensity-preserving image."""
    hr = tuple(k.shape[-2:])
    k = crop_kspace(_align(k, hr, lr, inverse=False), lr)
    if mask is not None:
        k = _apply_mask(k, mask, "LR")
    return ifft2c(k) * math.sqrt(lr[0] * lr[1] / (hr[0] * hr[1]))


def zero_fill_upsample(image: Array, size: Sequence[int], *, magnitude: bool = True) -> Array:
    """Upsample by zero-padding k-space: the exact inverse of :func:`downsample` inside the kept band."""
    t, was_numpy = _as_tensor(image)
    lr, hr = tuple(t.shape[-2:]), tuple(size)
    k = _align(pad_kspace(fft2c(t), hr), hr, lr, inverse=True)
    out = ifft2c(k) * math.sqrt(hr[0] * hr[1] / (lr[0] * lr[1]))
    return _back(out.abs() if magnitude else out, was_numpy)


def band_projection(x: torch.Tensor, lr_size: Sequence[int]) -> torch.Tensor:
    """The part of real images ``x [..., H, W]`` inside the k-space band an ``lr_size`` image holds (real part of
    the zero-filled crop; an orthogonal projection when the band has no unpaired Nyquist line, i.e. odd sizes)."""
    low = downsample(x.float(), size=lr_size, magnitude=False)
    return zero_fill_upsample(low, tuple(x.shape[-2:]), magnitude=False).real.to(x.dtype)


def seed_from_name(name: str) -> int:
    """A stable 32-bit seed from a file name, so each volume gets the same mask on every run and machine."""
    return int.from_bytes(hashlib.sha256(str(name).encode()).digest()[:4], "little")


class CartesianMask(abc.ABC):
    """Column (phase-encode) sampling mask over the last axis; owns its random generator.

    ``mask(width, seed=None)`` returns a boolean vector; a ``seed`` (e.g. :func:`seed_from_name`) makes the
    call reproducible without touching the object's own generator.
    """

    def __init__(self, acceleration: float, center_fraction: float, seed: int | None = None):
        if not math.isfinite(acceleration) or acceleration < 1:
            raise ValueError(f"acceleration must be >= 1, got {acceleration!r}")
        if not 0 < center_fraction <= 1:
            raise ValueError(f"center fraction must be in (0, 1], got {center_fraction!r}")
        self.acceleration = float(acceleration)
        self.center_fraction = float(center_fraction)
        self.rng = np.random.default_rng(seed)

    def __call__(self, width: int, seed: int | None = None) -> np.ndarray:
        rng = np.random.default_rng(seed) if seed is not None else self.rng
        num_low = max(1, int(round(width * self.center_fraction)))
        mask = self._outer(width, num_low, rng)
        pad = (width - num_low + 1) // 2
        mask[pad : pad + num_low] = True
        return mask

    @abc.abstractmethod
    def _outer(self, width: int, num_low: int, rng: np.random.Generator) -> np.ndarray:
        """Columns sampled outside the fully sampled centre."""


class RandomMask(CartesianMask):
    """Columns outside the centre kept independently with the probability that gives acceleration R on average."""

    def _outer(self, width: int, num_low: int, rng: np.random.Generator) -> np.ndarray:
        prob = max(0.0, (width / self.acceleration - num_low) / max(width - num_low, 1))
        return rng.uniform(size=width) < prob


class EquispacedMask(CartesianMask):
    """Equally spaced columns from a random offset, spacing adjusted so the centre counts towards R."""

    def _outer(self, width: int, num_low: int, rng: np.random.Generator) -> np.ndarray:
        mask = np.zeros(width, dtype=bool)
        wanted = width / self.acceleration - num_low
        if wanted <= 0:
            return mask
        spacing = (width - num_low) / wanted
        offset = rng.uniform(0, spacing)
        mask[np.floor(np.arange(offset, width, spacing)).astype(int)] = True
        return mask


MASKS = {"random": RandomMask, "equispaced": EquispacedMask}


class T2NetMask:
    """T2Net's column statistics drawn anew: a contiguous, fully sampled block of ``center_columns`` at the k-space
    centre (columns ``W // 2 - c // 2`` to ``W // 2 - c // 2 + c - 1``) plus ``random_columns`` drawn uniformly
    without replacement among the other columns; owns its generator like :class:`CartesianMask`.

    T2Net itself (Feng et al., MICCAI 2021) applies one fixed mask file to every slice; those files ship with
    medsr (:func:`medsr.data.masks.published_mask`, mask kind ``t2net``). This class draws masks with the same
    counts per subject (mask kind ``t2net-random``, a named variant): :data:`T2NET_PRESETS` are the published
    files' statistics. ``1D-Cartesian_6X_128128.mat`` samples 38 of 128 columns (20 centre + 18 outer);
    ``1D-Cartesian_6x_6464.mat`` 28 of 64 (20 centre + 8 outer). Their "6X" is a file name, not the acceleration
    of the data: T2Net applies the mask on the LR grid (crop 256 -> 128 or 64, then mask), where it keeps 38 of
    128 columns, R = 3.37 (28 of 64, R = 2.29); a magnitude image's Hermitian spectrum lowers both further
    (:func:`medsr.data.masks.mirror_acceleration`).
    """

    def __init__(self, center_columns: int, random_columns: int, seed: int | None = None):
        if int(center_columns) != center_columns or center_columns < 1:
            raise ValueError(f"centre columns must be a positive integer, got {center_columns!r}")
        if int(random_columns) != random_columns or random_columns < 0:
            raise ValueError(f"random columns must be a non-negative integer, got {random_columns!r}")
        self.center_columns, self.random_columns = int(center_columns), int(random_columns)
        self.rng = np.random.default_rng(seed)

    @classmethod
    def preset(cls, width: int, seed: int | None = None) -> "T2NetMask":
        """The T2Net statistics for a grid of ``width`` columns (:data:`T2NET_PRESETS`); ``ValueError`` otherwise."""
        if width not in T2NET_PRESETS:
            known = " and ".join(f"{w} columns ({c} centre + {r} random)" for w, (c, r) in T2NET_PRESETS.items())
            raise ValueError(f"T2Net presets exist for {known}; this grid has {width}")
        return cls(*T2NET_PRESETS[width], seed=seed)

    def __call__(self, width: int, seed: int | None = None) -> np.ndarray:
        if self.center_columns + self.random_columns > width:
            raise ValueError(f"{self.center_columns} + {self.random_columns} columns do not fit a width of {width}")
        rng = np.random.default_rng(seed) if seed is not None else self.rng
        mask = np.zeros(width, dtype=bool)
        mask[_window(width, self.center_columns)] = True
        mask[rng.choice(np.flatnonzero(~mask), size=self.random_columns, replace=False)] = True
        return mask


T2NET_PRESETS = {128: (20, 18), 64: (20, 8)}
"""Columns (centre, outer) per LR grid width, counted in T2Net's published mask files (x2: 128 columns, x4: 64)."""


def crop_mask(mask: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The part of a centred mask (1-D ``[W]`` or 2-D ``[H, W]``) that a crop of the spectrum to ``shape`` keeps."""
    if mask.ndim == 1:
        return mask[_window(mask.shape[0], int(shape[-1]))]
    return mask[_window(mask.shape[0], int(shape[-2])), _window(mask.shape[1], int(shape[-1]))]


def _apply_mask(k: torch.Tensor, mask: np.ndarray, grid: str) -> torch.Tensor:
    m = torch.from_numpy(np.array(mask, dtype=bool)).to(k.device)
    want = tuple(k.shape[-m.ndim:]) if m.ndim in (1, 2) else None
    if tuple(m.shape) != want:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not fit the {grid} k-space of {tuple(k.shape[-2:])}")
    return k * m.to(k.real.dtype)


def undersample(image: Array, mask: np.ndarray, *, magnitude: bool = True) -> Array:
    """Keep the k-space samples of ``mask`` (``[W]`` columns or ``[H, W]``) of ``image`` on its own grid."""
    t, was_numpy = _as_tensor(image)
    out = ifft2c(_apply_mask(fft2c(t), mask, "image's"))
    return _back(out.abs() if magnitude else out, was_numpy)


def degrade(
    image: Array,
    scale: float | Sequence[float] = 1.0,
    *,
    mask: np.ndarray | None = None,
    mask_grid: str = "lr",
    noise_snr_db: float | None = None,
    generator: torch.Generator | None = None,
    magnitude: bool = True,
) -> Array:
    """Joint degradation: crop k-space to ``scale`` and undersample it with ``mask``, optionally add noise.

    ``mask`` is boolean, a column vector ``[W]`` or a 2-D ``[H, W]`` array, on the grid named by ``mask_grid``:
    ``"lr"`` (crop, then mask: T2Net's order; the mask is what the LR data keep) or ``"hr"`` (mask the HR
    spectrum, then crop: the columns outside the LR band are dropped, so the LR grid keeps
    ``crop_mask(mask, lr)``). With ``noise_snr_db``, complex white Gaussian noise is added (equivalent in image and
    k-space domains under the orthonormal FFT); its standard deviation per component is
    ``rms(clean LR) / 10 ** (snr / 20)``, so the magnitude becomes Rician.
    """
    if mask_grid not in ("lr", "hr"):
        raise ValueError(f"mask grid must be 'lr' or 'hr', got {mask_grid!r}")
    t, was_numpy = _as_tensor(image)
    hr = tuple(t.shape[-2:])
    lr = lr_shape(hr, scale)
    k = fft2c(t)
    if mask is not None and mask_grid == "hr":
        k = _apply_mask(k, mask, "HR")
    out = _crop_to_image(k, lr, mask if mask_grid == "lr" else None)
    if noise_snr_db is not None:
        rms = out.abs().pow(2).mean().sqrt()
        sigma = rms / (10 ** (float(noise_snr_db) / 20))
        noise = torch.randn(out.shape, generator=generator, dtype=out.real.dtype, device=out.device)
        noise_i = torch.randn(out.shape, generator=generator, dtype=out.real.dtype, device=out.device)
        out = out + sigma * torch.complex(noise, noise_i)
    return _back(out.abs() if magnitude else out, was_numpy)


PHASES = ("none", "smooth-random")
"""Phases put on a magnitude image before it is sampled: none (its spectrum stays Hermitian) or smooth-random."""


def smooth_random_phase(shape: Sequence[int], seed: int, cycles: int = 2, peak: float = math.pi) -> np.ndarray:
    """A smooth random phase map ``[H, W]`` (radians, float32), a pure function of ``seed``.

    MR images are complex with a slowly varying phase (coil sensitivities, B0 inhomogeneity); a magnitude image
    has none, so its spectrum is Hermitian and half of it is redundant (Shimron et al., "Implicit data crimes",
    PNAS 2022). Multiplying the magnitude by ``exp(i phase)`` before sampling restores an honest task. The map is
    the real part of a random sum of plane waves with at most ``cycles`` periods across the field of view per axis
    (complex Gaussian amplitudes falling as ``1 / (1 + |k|^2)``), scaled so its largest magnitude is ``peak``.
    """
    rows, cols = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(seed)
    ky, kx = np.meshgrid(np.arange(-cycles, cycles + 1), np.arange(-cycles, cycles + 1), indexing="ij")
    amplitude = (rng.normal(size=ky.shape) + 1j * rng.normal(size=ky.shape)) / (1 + ky**2 + kx**2)
    y = (np.arange(rows) + 0.5) / rows
    x = (np.arange(cols) + 0.5) / cols
    waves = np.exp(2j * np.pi * (ky.reshape(-1, 1, 1) * y[:, None] + kx.reshape(-1, 1, 1) * x[None, :]))
    field = np.tensordot(amplitude.reshape(-1), waves, axes=1).real
    return (peak * field / np.abs(field).max()).astype(np.float32)


def data_consistency(k: torch.Tensor, measured: torch.Tensor, mask: torch.Tensor,
                     noise_weight: float | torch.Tensor | None = None) -> torch.Tensor:
    """Data consistency in k-space (Schlemper et al., "A Deep Cascade of Convolutional Neural Networks for MR
    Image Reconstruction", IPMI 2017 / IEEE TMI 2018, eq. 6): where ``mask`` samples, replace the predicted
    spectrum ``k`` by the ``measured`` one (hard, ``noise_weight=None``: the noiseless limit) or by
    ``(k + w * measured) / (1 + w)`` (soft, ``w = noise_weight >= 0``: the closed-form least-squares step for
    noisy data); elsewhere keep ``k``. ``mask`` broadcasts against ``k`` (``[..., W]`` columns or ``[..., H, W]``)."""
    target = measured if noise_weight is None else (k + noise_weight * measured) / (1 + noise_weight)
    return torch.where(mask.to(torch.bool), target, k)
