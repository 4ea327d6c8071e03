"""Denoising HU slices with a trained 2-D denoiser: the one path of validation, the CT demo, the CT benchmark and
``medsr denoise``.

The network sees the fixed normalisation of :class:`medsr.intensity.HURule` (``1 + HU / 1000``, padding below
-1024 HU clamped to air) and its output is mapped back to HU with the padding restored; the network runs as
:func:`medsr.models.base.folded_for_inference` folds it (batch norm folded into the convolutions, channels-last:
the same function, about twice as fast on CPU); the slices go through
:func:`medsr.inference.planes.predict_planes` at scale 1 (batches, optional blended tiles), so every caller gets the
same voxels for the same options.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from medsr.inference.planes import InferenceOptions, predict_planes
from medsr.intensity import HURule
from medsr.models.base import as_image, folded_for_inference


class PlaneDenoiser(nn.Module):
    """A denoiser ``x [B, 1, H, W] -> [B, 1, H, W]`` behind the plane interface of :func:`predict_planes`
    (stacks of one slice, output size = input size, no reference)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, lr: torch.Tensor, out_size: tuple[int, int], ref: torch.Tensor | None) -> torch.Tensor:
        return as_image(self.net(lr))


@torch.no_grad()
def denoise_slices(net: nn.Module, hu: np.ndarray | torch.Tensor, options: InferenceOptions | None = None,
                   bar: tqdm | None = None) -> np.ndarray:
    """Denoise HU slices ``[N, H, W]`` with ``net`` (evaluation mode, on ``options.device``; default: the
    network's device, whole slices, batches of 8); float32 HU out, padding below -1024 HU kept."""
    hu = np.ascontiguousarray(hu, dtype=np.float32)
    if options is None:
        options = InferenceOptions(device=next(net.parameters()).device, progress=False)
    net.eval()
    model = PlaneDenoiser(folded_for_inference(net)).to(options.device)
    x, restore = HURule().normalise(hu)
    return restore(predict_planes(model, x, tuple(hu.shape[1:]), options=options, bar=bar))
