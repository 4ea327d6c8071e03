"""Reference-guided joint upsampling with k-space band consistency: the training-free multi-contrast anchor.

The target's LR slice is zero-filled in k-space to the output grid (the exact inverse of the k-space crop inside
the band); a guided filter (He, Sun & Tang, "Guided Image Filtering", IEEE TPAMI 35(6), 2013) then models the
target, in every ``(2 r + 1)^2`` window, as a linear function of the high-resolution reference,
``q = a I + b`` with ``a = cov(I, p) / (var(I) + eps)`` and ``b = mean(p) - a mean(I)`` (coefficients averaged over
the windows that cover a pixel), which carries the reference's edges into the target wherever the two contrasts
correspond locally, inversions included (``a < 0``). The measured band is then put back: the output keeps the
input's k-space band exactly and takes only the out-of-band part of ``q`` (as the ``kspace`` head of the learned
models does, :func:`medsr.models.base.band_projection`). ``iterations`` repeats filter and band step, each filter
reading the previous band-consistent estimate.

``eps`` is relative: the guide is divided by its largest magnitude, so ``eps`` is in units of that squared. A
reference on another grid than the output (an LR reference) is brought to it by k-space zero-filling.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from medsr.kspace import zero_fill_upsample
from medsr.models.base import SRModel, band_projection
from medsr.registry import MODELS


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


@MODELS.register("guided")
class GuidedUpsampling(SRModel):
    """Training-free reference-guided upsampling (module docstring): ``radius`` in output pixels (default: half
    the scale, at least 1; tuned on the embedded validation split by ``benchmarks/reference_anchors.py``), ``eps``
    relative to the guide's peak squared, ``iterations`` filter + band steps. Needs a reference."""

    uses_ref = True

    def __init__(self, radius: int | None = None, eps: float = 1e-3, iterations: int = 3):
        super().__init__()
        if radius is not None and (int(radius) != radius or radius < 1):
            raise ValueError(f"guided needs an integer radius >= 1, got {radius}")
        if not eps > 0 or int(iterations) != iterations or iterations < 1:
            raise ValueError(f"guided needs eps > 0 and iterations >= 1, got {eps}, {iterations}")
        self.radius, self.eps, self.iterations = radius, float(eps), int(iterations)

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> torch.Tensor:
        scale = self.check_scale(lr, out_size)
        self.check_ref(lr, ref)
        if ref is None:
            raise ValueError("guided upsampling needs a reference (--ref)")
        radius = self.radius if self.radius is not None else max(1, round(max(scale) / 2))
        centre = self.centre_slice(lr).float()
        size = (int(out_size[0]), int(out_size[1]))
        base = zero_fill_upsample(centre, size, magnitude=False).real
        guide = reference_on_grid(ref, size)
        x = base
        for _ in range(self.iterations):
            q = guided_filter(guide, x, radius, self.eps)
            x = base + q - band_projection(q, centre.shape[-2:])
        return x.clamp_min(0).to(lr.dtype)
