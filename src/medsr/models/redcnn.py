"""RED-CNN: Chen et al., "Low-Dose CT With a Residual Encoder-Decoder Convolutional Neural Network", IEEE TMI
36(12), 2017.

Five 5x5 convolutions without padding (each shrinks the image by 4 pixels) and five mirrored 5x5 transposed
convolutions, ReLU between layers, and three shortcuts that add the input of conv 1, conv 3 and conv 5 to the
outputs of deconv 5, 3 and 1 (the paper's residual compensation, every two layers). The paper uses 96 filters
per layer and a final ReLU on images scaled to [0, 1]; here ``width`` defaults to a CPU-sized 32 and the final
ReLU is left out, because medsr's CT normalisation (:mod:`medsr.ct.units`) maps padding below air to negative
values. Input and output: ``[B, 1, H, W]`` in that normalisation (any ``H, W`` above 20).
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.base import Denoiser
from medsr.registry import MODELS


@MODELS.register("redcnn")
class REDCNN(Denoiser):
    """``forward(x [B, 1, H, W]) -> [B, 1, H, W]``, the denoised image."""

    def __init__(self, width: int = 32, kernel_size: int = 5):
        super().__init__()
        channels = [1] + [width] * 5
        self.encoder = nn.ModuleList(nn.Conv2d(a, b, kernel_size) for a, b in zip(channels[:-1], channels[1:]))
        self.decoder = nn.ModuleList(nn.ConvTranspose2d(b, a, kernel_size)
                                     for a, b in reversed(list(zip(channels[:-1], channels[1:]))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcuts = []
        out = x
        for i, layer in enumerate(self.encoder):
            if i % 2 == 0:
                shortcuts.append(out)  # inputs of conv 1, 3, 5
            out = torch.relu(layer(out))
        for i, layer in enumerate(self.decoder):
            out = layer(out)
            if i % 2 == 0:
                out = out + shortcuts.pop()  # outputs of deconv 1, 3, 5
            if i < len(self.decoder) - 1:
                out = torch.relu(out)
        return out
