"""k-space zero-filling of the centre slice: the exact inverse of ``medsr.kspace.downsample`` inside the band,
and the honest floor for inputs made by k-space cropping."""

from __future__ import annotations

from typing import Sequence

import torch

from medsr.kspace import zero_fill_upsample
from medsr.models.base import SRModel
from medsr.registry import MODELS


@MODELS.register("zerofill")
class ZeroFill(SRModel):
    """Pads the centred spectrum of the centre slice with zeros to ``out_size`` (magnitude output). No parameters;
    ``out_size`` must not be smaller than the input on either axis."""

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> torch.Tensor:
        self.check_scale(lr, out_size)
        out = zero_fill_upsample(self.centre_slice(lr).float(), (int(out_size[0]), int(out_size[1])))
        return out.to(lr.dtype)
