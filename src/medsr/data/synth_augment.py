"""Pure functions of domain-randomised image synthesis from label maps (used by :mod:`medsr.data.synth`).

After SynthSeg (Billot et al., "SynthSeg: Segmentation of brain MRI scans of any contrast and resolution
without retraining", Medical Image Analysis 86, 2023) and SynthSR (Iglesias et al., "SynthSR: A public AI tool
to turn heterogeneous clinical brain scans into high-resolution T1-weighted images for 3D morphometry", Science
Advances 9, 2023): label maps are deformed (random affine + smooth elastic field), every label gets its own
Gaussian intensity distribution, and the image is blurred (partial volume), multiplied by texture and bias
fields, gamma-corrected and given Rician noise. Every function takes its randomness from a
:class:`numpy.random.Generator` it is given, so an image is a pure function of the generator's seed.

Arrays are ``[..., H, W]``; a stack of adjacent slices shares its geometry, texture and bias fields.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
from scipy import ndimage

Pair = tuple[float, float]
# Per-label Gaussian intensity: mean ~ U(0, 1) (0 for the background class), std ~ U(0, GMM_STD_MAX).
GMM_STD_MAX = 0.06
# Control points per axis of the smooth fields: texture (fine) and bias (low order) and elastic deformation.
TEXTURE_POINTS = (4, 16)
BIAS_POINTS = (2, 4)
ELASTIC_POINTS = 5
# Extra Gaussian blur (pixels) of a lower-resolution HR acquisition (``hr_blur``), and the gamma-exponent cap.
HR_BLUR_SIGMA = (0.5, 1.4)
GAMMA_LOG_MAX = 1.0


def smooth_field(shape: Sequence[int], points: int, rng: np.random.Generator) -> np.ndarray:
    """A random field of ``shape`` (last two axes) with unit variance: standard normal weights on a ``points x
    points`` grid of Gaussian bumps (width one grid spacing) spanning the field of view."""
    coarse = rng.standard_normal((max(1, points), max(1, points)))
    return (_bumps(int(shape[-2]), coarse.shape[0]) @ coarse @ _bumps(int(shape[-1]), coarse.shape[1]).T).astype(
        np.float32)


@functools.lru_cache(maxsize=256)
def _bumps(n: int, points: int) -> np.ndarray:
    """``[n, points]`` Gaussian bumps centred on ``points`` pixel-centre positions, rows of unit norm."""
    spacing = n / points
    centres = (np.arange(points) + 0.5) * spacing - 0.5
    weights = np.exp(-0.5 * ((np.arange(n)[:, None] - centres[None]) / spacing) ** 2)
    return weights / np.sqrt((weights**2).sum(axis=1, keepdims=True))


def sampling_grid(
    shape: tuple[int, int],
    centre: Pair,
    rng: np.random.Generator,
    *,
    rotation_deg: float,
    zoom: Pair,
    shear: float,
    elastic_px: float,
) -> np.ndarray:
    """Source coordinates ``[2, H, W]`` (row, column) of every output pixel: a random 2-D affine map about
    ``centre`` (rotation by a random multiple of 90 degrees plus U(-rotation_deg, rotation_deg), a random flip,
    zoom U(zoom) per axis (source pixels per output pixel), shear U(-shear, shear)) plus a smooth elastic
    displacement of up to about ``elastic_px`` output pixels."""
    angle = math.radians(90.0 * int(rng.integers(4)) + rng.uniform(-rotation_deg, rotation_deg))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    skew = np.array([[1.0, rng.uniform(-shear, shear)], [rng.uniform(-shear, shear), 1.0]])
    flip = np.diag([1.0, -1.0 if rng.integers(2) else 1.0])
    matrix = rot @ skew @ flip @ np.diag(rng.uniform(zoom[0], zoom[1], size=2))
    amplitude = elastic_px * rng.uniform(0.0, 1.0)
    rows, cols = np.meshgrid(np.arange(shape[0]) - (shape[0] - 1) / 2, np.arange(shape[1]) - (shape[1] - 1) / 2,
                             indexing="ij")
    rows = rows + amplitude * smooth_field(shape, ELASTIC_POINTS, rng)
    cols = cols + amplitude * smooth_field(shape, ELASTIC_POINTS, rng)
    grid = np.einsum("ij,jhw->ihw", matrix, np.stack([rows, cols]))
    return (grid + np.asarray(centre, dtype=np.float64)[:, None, None]).astype(np.float32)


def warp(slices: np.ndarray, grid: np.ndarray, order: int, outside: float) -> np.ndarray:
    """Each slice of ``slices [S, Hs, Ws]`` sampled at ``grid [2, H, W]`` (``order`` 0: nearest, 1: linear),
    ``outside`` beyond the slice."""
    return np.stack([ndimage.map_coordinates(s, grid, order=order, mode="constant", cval=outside, prefilter=False)
                     for s in slices])


def split_labels(labels: np.ndarray, values: np.ndarray, bounds: np.ndarray, rng: np.random.Generator,
                 max_parts: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Split each label ``l >= 1`` of ``labels`` into 1..``max_parts`` sub-classes at random thresholds of
    ``values`` drawn in ``bounds[l] = (low, high)``, for within-tissue variety (e.g. deep and cortical grey
    matter). Returns the class map (0 stays background) and, per class, its label."""
    classes = np.zeros(labels.shape, dtype=np.int64)
    parent = [0]
    for label in range(1, len(bounds)):
        cuts = np.sort(rng.uniform(bounds[label][0], bounds[label][1], size=int(rng.integers(max_parts))))
        inside = labels == label
        classes[inside] = len(parent) + np.searchsorted(cuts, values[inside])
        parent.extend([label] * (len(cuts) + 1))
    return classes, np.asarray(parent, dtype=np.int64)


def add_layers(classes: np.ndarray, distance: np.ndarray, widths: Sequence[float], first: int) -> np.ndarray:
    """Background pixels at ``distance`` within the cumulative ``widths`` become classes ``first``,
    ``first + 1``, ... (concentric layers such as CSF, skull and scalp around a brain)."""
    out = classes.copy()
    edges = np.cumsum(widths)
    band = np.searchsorted(edges, distance)
    layer = (classes == 0) & (distance > 0) & (band < len(widths))
    out[layer] = first + band[layer]
    return out


def procedural_classes(shape: Sequence[int], rng: np.random.Generator, max_classes: int = 10) -> np.ndarray:
    """A random label map ``[S, H, W]`` of a body-like layout: inside the union of 1-3 random ellipses (or, for
    one map in four, the whole field of view) the argmax of 3..``max_classes`` smooth random fields that drift
    slowly from slice to slice; a rim of its own class along the outline; background 0 outside."""
    depth, h, w = shape
    n = int(rng.integers(3, max_classes + 1))
    points = int(rng.integers(3, 15))
    base = np.stack([smooth_field((h, w), points, rng) for _ in range(n)])
    drift = np.stack([smooth_field((h, w), points, rng) for _ in range(n)])
    steps = (np.arange(depth) - depth // 2)[:, None, None, None] * rng.uniform(0.0, 0.3)
    classes = 2 + np.argmax(base[None] + steps * drift[None], axis=1)
    if rng.random() < 0.25:
        return classes
    rows, cols = np.meshgrid(np.arange(h) / h - 0.5, np.arange(w) / w - 0.5, indexing="ij")
    depth_px = np.full((h, w), -np.inf)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(-0.3, 0.3, size=2)
        ay, ax = rng.uniform(0.2, 0.7, size=2)
        angle = rng.uniform(0, math.pi)
        u = (rows - cy) * math.cos(angle) + (cols - cx) * math.sin(angle)
        v = -(rows - cy) * math.sin(angle) + (cols - cx) * math.cos(angle)
        radius = np.sqrt((u / ay) ** 2 + (v / ax) ** 2)
        depth_px = np.maximum(depth_px, (1.0 - radius) * min(ay, ax) * min(h, w))
    rim = rng.uniform(1.0, 6.0)
    classes = np.where(depth_px[None] <= rim, 1, classes)
    return np.where(depth_px[None] <= 0, 0, classes)


def render(
    classes: np.ndarray,
    rng: np.random.Generator,
    *,
    snr_db: Pair,
    texture: float,
    pv_sigma: Pair,
    bias: float,
    gamma_std: float,
    zero_background: float,
    hr_blur: float,
) -> np.ndarray:
    """One contrast ``[S, H, W]`` of the class map ``classes [S, H, W]`` (class 0 = background), before scaling.

    Per class a Gaussian intensity (mean U(0, 1), std U(0, GMM_STD_MAX); background mean 0); a multiplicative
    texture ``1 + texture * field`` at a random smoothness; partial-volume Gaussian blur of sigma U(pv_sigma)
    pixels (plus, with probability ``hr_blur``, the extra blur of a lower-resolution acquisition); a bias field
    ``exp(bias * field)`` of low order; gamma ``exp(N(0, gamma_std))``; Rician noise at SNR U(snr_db) dB (complex
    Gaussian noise of sigma ``mean foreground / 10^(SNR/20)``, then the magnitude); with probability
    ``zero_background`` the background is masked to 0 afterwards (as scanners and brain extraction do).
    """
    n = int(classes.max()) + 1
    means = rng.uniform(0.0, 1.0, size=n).astype(np.float32)
    stds = rng.uniform(0.0, GMM_STD_MAX, size=n).astype(np.float32)
    means[0] = stds[0] = 0.0
    image = means[classes] + stds[classes] * rng.standard_normal(classes.shape, dtype=np.float32)
    image *= 1.0 + texture * smooth_field(classes.shape, int(rng.integers(*TEXTURE_POINTS)), rng)
    sigma = rng.uniform(*pv_sigma)
    if rng.random() < hr_blur:
        sigma = math.hypot(sigma, rng.uniform(*HR_BLUR_SIGMA))
    image = ndimage.gaussian_filter(np.maximum(image, 0.0), sigma=(0, sigma, sigma), mode="nearest")
    image *= np.exp(bias * rng.uniform(0.0, 1.0) * smooth_field(classes.shape, int(rng.integers(*BIAS_POINTS)), rng))
    peak = float(image.max())
    if peak > 0:
        gamma = math.exp(float(np.clip(rng.normal(0.0, gamma_std), -GAMMA_LOG_MAX, GAMMA_LOG_MAX)))
        image = peak * (image / peak) ** gamma
    foreground = classes > 0
    level = float(image[foreground].mean()) if foreground.any() else max(peak, 1.0)
    noise = level / 10.0 ** (rng.uniform(*snr_db) / 20.0)
    image = rician(image, noise, rng)
    if rng.random() < zero_background:
        image[~foreground] = 0.0
    return image.astype(np.float32)


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``image`` plus complex white Gaussian noise of standard deviation ``sigma`` per channel."""
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.hypot(real, imag)
