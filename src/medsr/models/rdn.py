"""RDN: Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018, made arbitrary-scale.

The paper's sub-pixel upsampler (fixed scales) is replaced by bicubic resampling of the features to
``out_size`` followed by two 3x3 convolutions, so one model serves any, also asymmetric, scale. The bicubic
upsampled centre slice is added as a global residual.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from medsr.models.base import SRModel, bicubic_upsample
from medsr.models.blocks import RDNEncoder, conv
from medsr.registry import MODELS


@MODELS.register("rdn")
class RDN(SRModel):
    """RDN encoder (defaults: the paper's G0 = 64, D = 16, C = 8, G = 64) with a resampling head."""

    def __init__(self, n_feats: int = 64, n_blocks: int = 16, growth: int = 64, n_layers: int = 8):
        super().__init__()
        self.encoder = RDNEncoder(1, n_feats, n_blocks, growth, n_layers)
        self.head = nn.Sequential(conv(n_feats, n_feats), nn.ReLU(inplace=True), conv(n_feats, 1))

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> torch.Tensor:
        self.check_scale(lr, out_size)
        x = self.centre_slice(lr)
        return self.head(bicubic_upsample(self.encoder(x), out_size)) + bicubic_upsample(x, out_size)
