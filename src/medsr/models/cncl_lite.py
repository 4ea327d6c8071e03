"""CNCL-lite: a reduced variant of content-noise complementary learning (Geng et al., "Content-Noise
Complementary Learning for Medical Image Denoising", IEEE TMI 41(2), 2022), registered as ``cncl_lite``. The
paper's configuration (two full U-Nets, a conditional PatchGAN, L1 x 100 + GAN x 1) is ``cncl``
(:mod:`medsr.models.cncl`, config ``ct_cncl``); this variant keeps its two-branch idea at about 112 k parameters
(it was the shipped CT default until DnCNN weights trained on a real patient replaced it).

Two predictors read the same low-dose image ``x``: the content predictor estimates the clean image directly
(``content1``), the noise predictor estimates the noise, which gives a second content estimate
``content2 = x - noise``. The two estimates err differently (one blurs, the other leaves residual noise) and a
fusion layer combines them:

* ``fusion: conv``: a 1x1 convolution over ``[content1, content2]`` (initialised to their mean);
* ``fusion: cross_attention``: feature-level fusion (not in the paper). The last features of each predictor
  attend to the other's (transposed channel attention as in Restormer's MDTA, queries from one branch, keys and
  values from the other, :func:`medsr.models.restormer.channel_attention`); a 3x3 convolution of both attended
  features is added to the 1x1 fusion of the two images.

Each predictor is a head convolution, ``n_blocks`` blocks of ``width`` channels and a tail convolution, with a
long feature skip (not the paper's U-Nets); ``block: conv`` uses EDSR residual blocks
(:class:`medsr.models.blocks.ResBlock`), ``block: restormer`` Restormer transformer blocks
(:class:`medsr.models.restormer.TransformerBlock`). Its training config (``ct_cncl_lite``) also departs from the
paper: an unconditional discriminator, L1 : GAN weights 1 : 0.001 and an extra texture term. A training forward
returns a :class:`~medsr.models.base.ModelOutput` with the two branch outputs in ``aux`` (``content``: content1,
``noise``), read by the ``complementary`` loss.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.base import Denoiser, ModelOutput
from medsr.models.blocks import ResBlock, conv
from medsr.models.restormer import ChannelNorm, TransformerBlock, channel_attention
from medsr.registry import MODELS

FUSIONS = ("conv", "cross_attention")
BLOCKS = ("conv", "restormer")


class Predictor(nn.Module):
    """``x [B, 1, H, W] -> (features [B, width, H, W], prediction [B, 1, H, W])``."""

    def __init__(self, width: int, n_blocks: int, block: str, heads: int):
        super().__init__()
        self.head = conv(1, width)
        make = (lambda: ResBlock(width)) if block == "conv" else (lambda: TransformerBlock(width, heads))
        self.body = nn.Sequential(*[make() for _ in range(n_blocks)])
        self.tail = conv(width, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        head = self.head(x)
        features = head + self.body(head)
        return features, self.tail(features)


class CrossAttention(nn.Module):
    """Queries from ``a``, keys and values from ``b`` (both ``[B, C, H, W]``), transposed channel attention."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_a, self.norm_b = ChannelNorm(channels), ChannelNorm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Conv2d(channels, 2 * channels, 1)
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        k, v = self.kv(self.norm_b(b)).chunk(2, dim=1)
        return a + self.project(channel_attention(self.q(self.norm_a(a)), k, v, self.heads, self.temperature))


@MODELS.register("cncl_lite")
class CNCLLite(Denoiser):
    """``forward(x [B, 1, H, W]) -> ModelOutput(fused, aux={"content": content1, "noise": noise})``."""

    aux_outputs = ("content", "noise")

    def __init__(self, width: int = 32, n_blocks: int = 3, fusion: str = "conv", block: str = "conv",
                 heads: int = 2):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {', '.join(BLOCKS)}, got {block!r}")
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        self.fusion = fusion
        self.content = Predictor(width, n_blocks, block, heads)
        self.noise = Predictor(width, n_blocks, block, heads)
        self.mix = nn.Conv2d(2, 1, 1)
        with torch.no_grad():
            self.mix.weight.fill_(0.5)
            self.mix.bias.zero_()
        if fusion == "cross_attention":
            self.content_from_noise = CrossAttention(width, heads)
            self.noise_from_content = CrossAttention(width, heads)
            self.refine = conv(2 * width, 1)
            nn.init.zeros_(self.refine.weight)
            nn.init.zeros_(self.refine.bias)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        content_features, content1 = self.content(x)
        noise_features, noise = self.noise(x)
        content2 = x - noise
        fused = self.mix(torch.cat([content1, content2], dim=1))
        if self.fusion == "cross_attention":
            attended = torch.cat([self.content_from_noise(content_features, noise_features),
                                  self.noise_from_content(noise_features, content_features)], dim=1)
            fused = fused + self.refine(attended)
        return ModelOutput(fused, {"content": content1, "noise": noise})
