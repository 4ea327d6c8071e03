"""Thick-slice simulation along one axis: integrate each new slice over its slice profile, then sample.

A 2-D multi-slice acquisition measures, for slice ``j``, the object weighted by the slice profile ``p`` centred
on the slice position ``c_j``: ``s_j = integral p(x - c_j) f(x) dx``. Here the object ``f`` is the input
sampled on a fine grid, taken as constant over each voxel ``[i - 0.5, i + 0.5]`` (voxel units of the axis), so

    ``s_j = sum_i w_ji f_i``, ``w_ji = integral over [i - 0.5, i + 0.5] of p(x - c_j) dx``,

with the rows of ``w`` normalised to sum 1 (the profile is truncated to the field of view at the ends). Profiles
have unit area and full width at half maximum ``thickness``:

* ``gaussian``: standard deviation ``thickness / (2 sqrt(2 ln 2))``;
* ``rect``: a box of width ``thickness`` (an ideal slab).

Slice positions follow the pixel-centre grid of ``docs/architecture.md``: ``n = round(N / spacing)`` slices
(:func:`medsr.kspace.lr_length`) whose centres sit at input coordinate ``c_j = (j + 0.5) N / n - 0.5``, so the
field of view is kept and the effective spacing is ``N / n`` (exactly ``spacing`` when it divides ``N``).
``spacing = thickness + gap`` in the caller's terms.

This is the forward model of thick-slice MRI used by SMORE (Zhao et al., "SMORE: A Self-Supervised Anti-Aliasing
and Super-Resolution Algorithm for MRI Using Deep Learning", IEEE TMI 2021) to train on a volume's own in-plane
data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from medsr.kspace import lr_length

PROFILES = ("gaussian", "rect")
SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _profile_integral(x: np.ndarray, thickness: float, kind: str) -> np.ndarray:
    """Integral of the unit-area profile from ``-inf`` to ``x`` (its cumulative distribution)."""
    if kind == "gaussian":
        z = torch.from_numpy(x / (thickness * SIGMA_PER_FWHM * math.sqrt(2.0)))
        return 0.5 * (1.0 + torch.erf(z).numpy())
    return np.clip(x / thickness + 0.5, 0.0, 1.0)


def profile_weights(n_in: int, n_out: int, thickness: float, kind: str = "gaussian") -> np.ndarray:
    """The ``[n_out, n_in]`` float64 matrix ``w`` of the module docstring (``thickness`` in input voxels)."""
    if kind not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {kind!r}")
    if not (math.isfinite(thickness) and thickness > 0):
        raise ValueError(f"thickness must be a positive number of voxels, got {thickness!r}")
    if n_in < 1 or n_out < 1:
        raise ValueError(f"axis lengths must be positive, got {n_in} -> {n_out}")
    centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    edges = np.arange(n_in + 1) - 0.5
    cdf = _profile_integral(edges[None, :] - centres[:, None], thickness, kind)
    weights = np.diff(cdf, axis=1)
    return weights / weights.sum(axis=1, keepdims=True)


def thick_slices(volume: np.ndarray, axis: int, thickness: float, spacing: float,
                 kind: str = "gaussian") -> np.ndarray:
    """Simulate slices of ``thickness`` every ``spacing`` (both in input voxels of ``axis``) from ``volume``.

    Returns the array with ``axis`` of length ``round(N / spacing)``; other axes unchanged; dtype at least float32.
    """
    volume = np.asarray(volume)
    n_in = volume.shape[axis]
    weights = profile_weights(n_in, lr_length(n_in, spacing), thickness, kind)
    dtype = np.result_type(volume.dtype, np.float32)
    out = np.tensordot(weights.astype(dtype), np.moveaxis(volume, axis, 0), axes=1)
    return np.ascontiguousarray(np.moveaxis(out, 0, axis))


@dataclass(frozen=True)
class SliceProfile:
    """An acquisition's slices relative to their spacing: ``thickness`` = FWHM / spacing (1: contiguous slices,
    below 1: a gap between them) and the profile ``kind``."""

    thickness: float = 1.0
    kind: str = "gaussian"

    def coarsen(self, volume: np.ndarray, axis: int, factor: float) -> np.ndarray:
        """The acquisition of ``volume`` with slices ``factor`` voxels apart along ``axis``, this profile's
        thickness relative to that spacing."""
        return thick_slices(volume, axis, factor * self.thickness, factor, self.kind)
