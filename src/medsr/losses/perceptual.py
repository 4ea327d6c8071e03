"""Feature losses on a frozen network rebuilt from a medsr weights file: perceptual (Johnson et al. ECCV 2016)
and Gram/texture (Gatys et al. CVPR 2016).

The network must expose ``features(x) -> list[Tensor]`` (e.g. the ``unet`` model). It is held outside the module
tree, so it is in no state dict and no optimizer, and its parameters never require gradients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from medsr.checkpoint import build_from_weights
from medsr.errors import InputError
from medsr.losses.base import Loss
from medsr.models.unet import UNet
from medsr.registry import LOSSES


def gram(feature: torch.Tensor) -> torch.Tensor:
    """Gram matrix ``[B, C, C]`` of ``[B, C, H, W]`` features, divided by C*H*W."""
    b, c, h, w = feature.shape
    flat = feature.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().mean()


def gram_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (gram(a.float()) - gram(b.float())).abs().mean()


class FrozenFeatureLoss(Loss):
    """A frozen feature network, per-layer weights and a per-layer comparison ``compare(pred, target)``."""

    def __init__(
        self,
        weights: str,
        layer_weights: Sequence[float] | None = None,
        compare: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = l1,
    ):
        super().__init__()
        net, _ = build_from_weights(Path(weights))
        if not isinstance(net, UNet):  # the one feature network: features(x) -> list of maps
            raise InputError(weights, f"not a segmentation UNet ({type(net).__name__}), no features(x) to compare")
        net.requires_grad_(False).eval()
        self._net = [net]
        self.layer_weights = list(layer_weights) if layer_weights is not None else None
        self.compare = compare

    @property
    def net(self) -> nn.Module:
        return self._net[0]

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        net = self.net
        if next(net.parameters()).device != sr.device:
            net.to(sr.device)
        with torch.no_grad():
            target = net.features(hr)
        pred = net.features(sr)
        weights = self.layer_weights or [1.0] * len(pred)
        if len(weights) != len(pred):
            raise ValueError(f"layer_weights has {len(weights)} entries, the network gives {len(pred)} features")
        terms = [w * self.compare(p, t) for w, p, t in zip(weights, pred, target) if w]
        return torch.stack(terms).sum()


@LOSSES.register("perceptual")
class PerceptualLoss(FrozenFeatureLoss):
    """Weighted L1 between the frozen network's features of SR and HR."""

    def __init__(self, weights: str, layer_weights: Sequence[float] | None = None):
        super().__init__(weights, layer_weights, compare=l1)


@LOSSES.register("gram")
class GramLoss(FrozenFeatureLoss):
    """Weighted L1 between Gram matrices of the frozen network's features (texture statistics)."""

    def __init__(self, weights: str, layer_weights: Sequence[float] | None = None):
        super().__init__(weights, layer_weights, compare=gram_l1)
