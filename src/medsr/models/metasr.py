"""Meta-SR: Hu et al., "Meta-SR: A Magnification-Arbitrary Network for Super-Resolution", CVPR 2019.

Meta-Upscale: each output pixel is projected onto its LR pixel; a weight-prediction network maps the relative
offset and the scale to the weights of a 3x3 filter applied to the LR features there. Here the offset is taken
on the pixel-centre grid (nearest LR pixel, offset in [-1, 1] with one LR pixel = 2) and the scale enters per axis
as ``(1 / sy, 1 / sx)``, so asymmetric scales are exact. The bicubic upsampled centre slice is added as a
global residual (``head="bicubic"``), or the k-space head of :mod:`medsr.models.base` is used.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from medsr.models.base import SRModel
from medsr.models.blocks import MLP, Query, build_encoder, decode_grid
from medsr.registry import MODELS


@MODELS.register("metasr")
class MetaSR(SRModel):
    """Meta-SR with the paper's defaults: RDN encoder (``{"type": "rdn", ...}``) and a weight-prediction
    network of one 256-unit hidden layer predicting a 3x3 x C filter per output pixel from
    ``(offset y, offset x, 1 / sy, 1 / sx)``. ``head``: ``"bicubic"`` (as published: bicubic centre slice + decoder output) or ``"kspace"`` (zero-filling +
    band-split residual + zero-initialised in-band correction, the decoder's last layer zero-initialised;
    ``in_band_correction`` switches the correction); ``nonnegative``: clamp evaluation outputs at 0
    (``models.base``)."""

    def __init__(self, encoder: dict[str, Any] | None = None, hidden: Sequence[int] = (256,), head: str = "bicubic",
                 in_band_correction: bool | str = True, nonnegative: bool = True, chunk: int = 1 << 16):
        super().__init__()
        self.encoder = build_encoder(encoder, default="rdn")
        self.weight_net = MLP(4, self.encoder.out_channels * 9, hidden)
        self.init_head(head, self.encoder.out_channels, in_band_correction=in_band_correction, nonnegative=nonnegative)
        self.starts_at_zero(self.weight_net.net[-1])
        self.chunk = chunk

    def decode(self, q: Query) -> torch.Tensor:
        weights = self.weight_net(torch.cat([q.rel, q.cell / 2], dim=-1))
        return (q.feat * weights).sum(dim=-1, keepdim=True)

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> torch.Tensor:
        self.check_scale(lr, out_size)
        x = self.centre_slice(lr)
        feat = self.encoder(x)
        out = decode_grid(feat, out_size, self.decode, feat_unfold=True, ensemble=False, chunk=self.chunk)
        return self.upsample_output(lr, out, feat)
