"""Does the input still carry the band the self-test removes? An interpolated input does not.

The self-test (:mod:`medsr.infer.selftest`) degrades the input by the requested factor ``s``: in-plane it keeps the
central ``1/s`` of k-space (:func:`medsr.kspace.downsample`), through-plane it thickens the slices. If the input's
outer band, above its own Nyquist frequency over ``s``, is already (nearly) empty, because the scanner zero-filled
k-space to interpolate (or apodised it strongly), zero-filling restores that band exactly: the baseline looks
perfect, the model looks bad, and ``--adapt`` learns to add nothing.

Measure: the mean power per k-space sample outside the central crop the self-test keeps (``lr_shape(N, s)`` per
axis, the band above Nyquist / s) over the mean power per sample in the octave just below it (inside that crop, outside
the crop of half its size, so the DC and low frequencies do not count). In-plane over the X, Y spectra of all Z
slices, through-plane over the Z spectra of all (X, Y) lines. The input "looks interpolated" when this ratio is below
:data:`EMPTY_BAND_RATIO`.

Threshold, measured (ratio at x1.5 / x2 / x3 / x4): real acquisitions in dipy's data files (S0_10slices,
test_piesno, aniso_vox, in-plane) 0.066 to 0.32; the same volumes made complex with a smooth phase and
noise, k-space zero-filled by the test's factor and taken in magnitude (what a scanner's interpolation gives) 0.001 to
0.0096, the rectification by the magnitude keeping them above zero; Hamming apodisation 0.010 to 0.035 (caught
at x1.5 and x2). Along Z, thick Gaussian slices (FWHM = spacing) of S0_10slices 0.16 to 0.27, the same zero-filled
along Z 0.001. A real coronal T1 slice (dipy ``t1_coronal_slice``, itself smooth) gives 0.023 at x4: the threshold
:data:`EMPTY_BAND_RATIO` = 0.02 sits between, and a few smooth real inputs at high factors may come close.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from medsr import kspace

EMPTY_BAND_RATIO = 0.02


def _centre(shape: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
    """The central ``size`` of a centred spectrum of ``shape`` (DC at ``n // 2``, as :mod:`medsr.kspace`)."""
    return tuple(slice(n // 2 - k // 2, n // 2 - k // 2 + k) for n, k in zip(shape, size))


def outer_band_ratio(power: np.ndarray, factors: Sequence[float]) -> float | None:
    """Mean of the centred ``power`` spectrum above ``1 / factors`` of its Nyquist frequency over its mean in the
    octave below; None when either band is empty (too few samples to tell)."""
    keep = tuple(kspace.lr_length(n, f) for n, f in zip(power.shape, factors))
    half = tuple(max(1, k // 2) for k in keep)
    inside = np.zeros(power.shape, dtype=bool)
    inside[_centre(power.shape, keep)] = True
    below = inside.copy()
    below[_centre(power.shape, half)] = False
    if inside.all() or not below.any():
        return None
    return float(power[~inside].mean() / max(power[below].mean(), np.finfo(np.float64).tiny))


def inplane_ratio(volume: np.ndarray, factors: Sequence[float]) -> float | None:
    """:func:`outer_band_ratio` of the X, Y power spectrum summed over the Z slices of ``volume [X, Y, Z]``."""
    spectrum = np.fft.fftshift(np.fft.fft2(np.asarray(volume, dtype=np.float64), axes=(0, 1)), axes=(0, 1))
    return outer_band_ratio((np.abs(spectrum) ** 2).sum(axis=2), factors)


def through_ratio(volume: np.ndarray, factor: float) -> float | None:
    """:func:`outer_band_ratio` of the Z power spectrum summed over the (X, Y) lines of ``volume [X, Y, Z]``."""
    spectrum = np.fft.fftshift(np.fft.fft(np.asarray(volume, dtype=np.float64), axis=2), axes=2)
    return outer_band_ratio((np.abs(spectrum) ** 2).sum(axis=(0, 1)), [factor])


def interpolated_line(direction: str, ratio: float, factor_text: str) -> str:
    """The one line saying that the input looks interpolated in ``direction``."""
    return (f"the input looks interpolated {direction}: its band above Nyquist/{factor_text.lstrip('x')} holds "
            f"{ratio:.2g} of the power density of the octave below (threshold {EMPTY_BAND_RATIO:g}; zero-filled or "
            "apodised k-space?), so the self-test cannot judge the model there and --adapt would learn the wrong task")
