"""Reference-guided joint upsampling with k-space band consistency, as functions: the training-free ``guided``
model (:mod:`medsr.models.guided`) and the ``reference_base`` option of the learned models' k-space head
(:meth:`medsr.models.base.SRModel.init_head`) share them.

The target's LR slice is zero-filled in k-space to the output grid (the exact inverse of the k-space crop inside
the band); a guided filter (He, Sun & Tang, "Guided Image Filtering", IEEE TPAMI 35(6), 2013) then models the
target, in every ``(2 r + 1)^2`` window, as a linear function of the high-resolution reference,
``q = a I + b`` with ``a = cov(I, p) / (var(I) + eps)`` and ``b = mean(p) - a mean(I)`` (coefficients averaged over
the windows that cover a pixel), which carries the reference's edges into the target wherever the two contrasts
correspond locally, inversions included (``a < 0``). The measured band is then put back: the result keeps the
input's k-space band and takes only the out-of-band part of ``q`` (:func:`medsr.kspace.band_projection`).
``iterations`` repeats filter and band step, each filter reading the previous band-consistent estimate.

``eps`` is relative: the guide is divided by its largest magnitude, so ``eps`` is in units of that squared. A
reference on another grid than the output (an LR reference) is brought to it by k-space zero-filling.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from medsr.kspace import band_projection, zero_fill_upsample


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of ``x [B, C, H, W]`` over ``(2 radius + 1)^2`` windows, reflect-padded at the borders."""
    size = 2 * radius + 1
    pad = F.pad(x, (radius,) * 4, mode="reflect" if min(x.shape[-2:]) > radius else "replicate")
    return F.avg_pool2d(pad, size, stride=1)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter of ``src`` by ``guide`` (both ``[B, 1, H, W]``, float)."""
    mean_i, mean_p = box_mean(guide, radius), box_mean(src, radius)
    cov = box_mean(guide * src, radius) - mean_i * mean_p
    var = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def reference_on_grid(ref: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``ref [B, 1, hr, wr]`` on the output grid (k-space zero-filling when it is smaller), scaled to a largest
    magnitude of 1."""
    guide = ref.float()
    if tuple(guide.shape[-2:]) != size:
        guide = zero_fill_upsample(guide, size, magnitude=False).real
    peak = guide.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return guide / peak


def default_radius(scale: Sequence[float]) -> int:
    """Half the scale, at least 1 (tuned on the embedded validation split by ``benchmarks/reference_anchors.py``)."""
    return max(1, round(max(scale) / 2))


def guided_upsample(centre: torch.Tensor, size: tuple[int, int], ref: torch.Tensor, radius: int,
                    eps: float = 1e-3, iterations: int = 3) -> torch.Tensor:
    """The band-consistent guided upsampling ``[B, 1, H, W]`` (float) of the LR slice ``centre [B, 1, h, w]`` by
    the reference ``ref [B, 1, hr, wr]`` (module docstring)."""
    base = zero_fill_upsample(centre.float(), size, magnitude=False).real
    guide = reference_on_grid(ref, size)
    x = base
    for _ in range(iterations):
        q = guided_filter(guide, x, radius, eps)
        x = base + q - band_projection(q, centre.shape[-2:])
    return x
