"""LIIF: Chen et al., "Learning Continuous Image Representation with Local Implicit Image Function", CVPR 2021.

An encoder turns the centre slice into latent codes; an MLP decodes each output pixel from the (3x3-unfolded)
nearest codes, the relative coordinate and the per-axis cell, blended over the local ensemble of four codes.
The bicubic upsampled centre slice is added as a global residual (``head="bicubic"``), or the k-space head of
:mod:`medsr.models.base` turns the decoder output into a band-split residual over zero-filling.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from medsr.models.base import SRModel
from medsr.models.blocks import MLP, Query, build_encoder, decode_grid
from medsr.registry import MODELS


@MODELS.register("liif")
class LIIF(SRModel):
    """LIIF with the paper's defaults: EDSR-baseline encoder (``{"type": "edsr", "n_feats": 64, "n_blocks": 16}``;
    ``{"type": "rdn", ...}`` also works), a 4 x 256 ReLU MLP, feature unfolding, local ensemble, cell decoding.
    ``chunk`` bounds the number of decoder rows per call (memory), without changing the output.
    ``head``: ``"bicubic"`` (as published: bicubic centre slice + decoder output) or ``"kspace"`` (zero-filling +
    band-split residual + zero-initialised in-band correction, the decoder's last layer zero-initialised;
    ``in_band_correction`` switches the correction); ``nonnegative``: clamp evaluation outputs at 0
    (``models.base``)."""

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        hidden: Sequence[int] = (256, 256, 256, 256),
        feat_unfold: bool = True,
        local_ensemble: bool = True,
        cell_decode: bool = True,
        head: str = "bicubic",
        in_band_correction: bool | str = True,
        nonnegative: bool = True,
        chunk: int = 1 << 16,
    ):
        super().__init__()
        self.encoder = build_encoder(encoder, default="edsr")
        width = self.encoder.out_channels * (9 if feat_unfold else 1)
        self.imnet = MLP(width + 2 + (2 if cell_decode else 0), 1, hidden)
        self.init_head(head, self.encoder.out_channels, in_band_correction=in_band_correction, nonnegative=nonnegative)
        self.starts_at_zero(self.imnet.net[-1])
        self.feat_unfold, self.local_ensemble, self.cell_decode = feat_unfold, local_ensemble, cell_decode
        self.chunk = chunk

    def decode(self, q: Query) -> torch.Tensor:
        parts = [q.feat, q.rel] + ([q.cell] if self.cell_decode else [])
        return self.imnet(torch.cat(parts, dim=-1))

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> torch.Tensor:
        self.check_scale(lr, out_size)
        x = self.centre_slice(lr)
        feat = self.encoder(x)
        out = decode_grid(feat, out_size, self.decode, self.feat_unfold, self.local_ensemble, self.chunk)
        return self.upsample_output(lr, out, feat)
