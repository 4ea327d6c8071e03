"""CNCL, content-noise complementary learning, in the paper's configuration: Geng et al., "Content-Noise
Complementary Learning for Medical Image Denoising", IEEE TMI 41(2), 2022; reference code
github.com/gengmufeng/CNCL-denoising (``code/model.py``, ``code/train.py``), read, not copied.

Two U-Net predictors read the same low-dose image ``x``: the content predictor estimates the clean image
(``content1``), the noise predictor the noise, which gives a second estimate ``content2 = x - noise``. The fusion is
the paper's: a 1x1 convolution over ``[content1, content2]`` (initialised here to their mean). A training forward
returns a :class:`~medsr.models.base.ModelOutput` whose ``aux`` holds ``content`` (content1) and ``noise``.

Training (config ``ct_cncl``), as the reference code: the pixel loss ``content_noise`` (L1 between
``[fused, noise]`` and ``[fd, ld - fd]``) x 100 plus an LSGAN term x 1 from a conditional PatchGAN that sees
``[fused, noise, ld]`` (real: ``[fd, ld - fd, ld]``; :mod:`medsr.tasks.adversarial`); no texture term.

The predictors are the project's U-Net (:class:`medsr.models.unet.UNet`: Ronneberger's layout, 'same'
convolutions with batch normalisation, transposed-convolution upsampling, a 1x1 output convolution). The reference
code's U-Net has the same encoder widths (64 to 1024 over four poolings, batch normalisation) but upsamples
bilinearly, halves the channels in each decoder stage and ends in two plain 3x3 convolutions: about 21.9 M
parameters per predictor where this one has 31.0 M (43.8 M and 62.1 M for the whole generator at ``base: 64``,
``depth: 4``). For smaller or faster runs, lower ``base`` or ``depth``; the reduced variant is ``cncl_lite``.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.base import Denoiser, ModelOutput
from medsr.models.unet import UNet
from medsr.registry import MODELS


@MODELS.register("cncl")
class CNCL(Denoiser):
    """``forward(x [B, 1, H, W]) -> ModelOutput(fused, aux={"content": content1, "noise": noise})`` for any
    ``H, W``; ``base``: the first U-Net level's width, ``depth``: its number of poolings."""

    aux_outputs = ("content", "noise")

    def __init__(self, base: int = 64, depth: int = 4, batch_norm: bool = True):
        super().__init__()
        self.content = UNet(in_channels=1, num_classes=1, base=base, depth=depth, batch_norm=batch_norm)
        self.noise = UNet(in_channels=1, num_classes=1, base=base, depth=depth, batch_norm=batch_norm)
        self.fusion = nn.Conv2d(2, 1, 1)
        with torch.no_grad():
            self.fusion.weight.fill_(0.5)
            self.fusion.bias.zero_()

    def forward(self, x: torch.Tensor) -> ModelOutput:
        content1 = self.content(x)
        noise = self.noise(x)
        fused = self.fusion(torch.cat([content1, x - noise], dim=1))
        return ModelOutput(fused, {"content": content1, "noise": noise})
