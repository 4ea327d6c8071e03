"""Bicubic interpolation of the centre slice: the parameter-free baseline every table starts from."""

from __future__ import annotations

from typing import Sequence

import torch

from medsr.models.base import SRModel, bicubic_upsample
from medsr.registry import MODELS


@MODELS.register("bicubic")
class Bicubic(SRModel):
    """``F.interpolate(bicubic, align_corners=False)`` of the centre slice, on the pixel-centre grid that
    ``medsr.kspace.downsample`` samples (a half-pixel shift here would cost several dB). No parameters."""

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> torch.Tensor:
        self.check_scale(lr, out_size)
        return bicubic_upsample(self.centre_slice(lr), out_size)
