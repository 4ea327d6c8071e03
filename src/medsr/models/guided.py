"""Reference-guided joint upsampling with k-space band consistency: the training-free multi-contrast anchor
(``medsr sr --method guided``). The method is :func:`medsr.models.guidance.guided_upsample` (He et al.'s guided
filter driven by the HR reference on the zero-filled target, the measured band kept exactly)."""

from __future__ import annotations

from typing import Sequence

import torch

from medsr.models.base import SRModel
from medsr.models.guidance import default_radius, guided_upsample
from medsr.registry import MODELS


@MODELS.register("guided")
class GuidedUpsampling(SRModel):
    """Training-free reference-guided upsampling: ``radius`` in output pixels (default:
    :func:`~medsr.models.guidance.default_radius`), ``eps`` relative to the guide's peak squared, ``iterations``
    filter + band steps. Needs a reference."""

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
        radius = self.radius if self.radius is not None else default_radius(scale)
        size = (int(out_size[0]), int(out_size[1]))
        out = guided_upsample(self.centre_slice(lr), size, ref, radius, self.eps, self.iterations)
        return out.clamp_min(0).to(lr.dtype)
