"""Overlapping tiles of a 2-D plane and smooth blending windows, aligned with the super-resolved grid.

A plane of ``n`` pixels goes to ``N`` output pixels (pixel-centre geometry, ``align_corners=False``). A tile whose
low-resolution bounds ``[a, b)`` satisfy ``a * N / n`` and ``b * N / n`` integral covers exactly the output pixels
``[a * N / n, b * N / n)`` at the same scale, so tile boundaries are snapped to multiples of ``n / gcd(n, N)``.
Neighbouring tiles overlap by at least ``overlap`` input pixels; each tile's window is zero over a ``overlap // 4``
halo at its inner borders (where its receptive field is cut), rises as a raised cosine, and is one elsewhere,
so a model whose receptive radius is at most the halo gives exactly the untiled result, and any model gives a
seamless blend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """One tile along one axis: input pixels ``[lo, hi)``, output pixels ``[out_lo, out_hi)``, inner borders."""

    lo: int
    hi: int
    out_lo: int
    out_hi: int
    inner_lo: bool
    inner_hi: bool


def spans(n: int, out_n: int, tile: int | None, overlap: int) -> list[Span]:
    """Tiles along an axis of ``n`` input and ``out_n`` output pixels, at most ``tile`` input pixels each.

    A single whole-axis tile when ``tile`` is None or covers the axis, or when aligned tiles cannot overlap by
    ``overlap`` within ``tile`` pixels (an unusual size ratio).
    """
    step_unit = n // math.gcd(n, out_n)
    whole = [Span(0, n, 0, out_n, False, False)]
    if tile is None or tile >= n:
        return whole
    length = tile // step_unit * step_unit
    step = length - math.ceil(overlap / step_unit) * step_unit
    if step < step_unit:
        return whole
    count = math.ceil((n - length) / step) + 1
    room = (n - length) / step_unit
    starts = [math.floor(i * room / (count - 1)) * step_unit for i in range(count)]
    result = []
    for i, lo in enumerate(starts):
        hi = n if i == len(starts) - 1 else lo + length
        result.append(Span(lo, hi, lo * out_n // n, hi * out_n // n, i > 0, i < len(starts) - 1))
    return result


def _ramp(length: int, halo: int, ramp: int, inner_lo: bool, inner_hi: bool) -> np.ndarray:
    """1-D window: zero over ``halo`` pixels, a raised-cosine rise over ``ramp`` pixels, at each inner border."""
    window = np.ones(length, dtype=np.float64)
    rise = np.concatenate([np.zeros(halo), np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2])
    rise = rise[:length]
    if inner_lo:
        window[: len(rise)] *= rise
    if inner_hi:
        window[length - len(rise) :] *= rise[::-1]
    return window


def window(span_y: Span, span_x: Span, scale: tuple[float, float], overlap: int) -> np.ndarray:
    """Blending weights ``[out_h, out_w]`` of the tile ``span_y x span_x`` (see the module docstring)."""
    axes = []
    for span, s in zip((span_y, span_x), scale):
        halo = math.ceil(overlap // 4 * s)
        ramp = max(1, math.floor(overlap * s) - 2 * halo)
        axes.append(_ramp(span.out_hi - span.out_lo, halo, ramp, span.inner_lo, span.inner_hi))
    return np.outer(axes[0], axes[1])
