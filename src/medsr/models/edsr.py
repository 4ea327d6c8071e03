"""EDSR: Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPRW 2017.

Fixed integer scales: one sub-pixel (pixel-shuffle) upsampler per declared scale on a shared trunk (as in MDSR's
scale-specific tails). The bicubic upsampled centre slice is added as a global residual.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from medsr.models.base import SRModel, bicubic_upsample
from medsr.models.blocks import EDSREncoder, conv
from medsr.registry import MODELS


def pixel_shuffle_upsampler(scale: int, n_feats: int, out_channels: int = 1) -> nn.Sequential:
    """Sub-pixel convolution upsampler (Shi et al. CVPR 2016): x2 steps for powers of two, one step otherwise,
    followed by a 3x3 convolution to ``out_channels``."""
    steps = [2] * (scale.bit_length() - 1) if scale & (scale - 1) == 0 else [scale]
    layers: list[nn.Module] = []
    for s in steps:
        layers += [conv(n_feats, n_feats * s * s), nn.PixelShuffle(s)]
    return nn.Sequential(*layers, conv(n_feats, out_channels))


@MODELS.register("edsr")
class EDSR(SRModel):
    """EDSR for the integer ``scales`` it is built with; other scales raise ``ValueError``.

    Defaults are the paper's large model (32 blocks, 256 features, residual scaling 0.1).
    """

    def __init__(
        self, scales: Sequence[int] = (2, 3, 4), n_feats: int = 256, n_blocks: int = 32, res_scale: float = 0.1
    ):
        super().__init__()
        if not scales or any(int(s) != s or s < 2 for s in scales):
            raise ValueError(f"EDSR scales must be integers >= 2, got {list(scales)}")
        self.fixed_scales = tuple(int(s) for s in scales)
        self.encoder = EDSREncoder(1, n_feats, n_blocks, res_scale)
        self.upsamplers = nn.ModuleDict({str(s): pixel_shuffle_upsampler(s, n_feats) for s in self.fixed_scales})

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> torch.Tensor:
        sy, _ = self.check_scale(lr, out_size)
        x = self.centre_slice(lr)
        return self.upsamplers[str(round(sy))](self.encoder(x)) + bicubic_upsample(x, out_size)
