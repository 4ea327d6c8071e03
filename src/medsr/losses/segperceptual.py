"""Segmentation-guided perceptual loss: L1 between the features of a frozen tissue-segmentation UNet on SR and HR.

The perceptual loss of Johnson et al. (ECCV 2016) with the feature network replaced by a 2-D UNet
(Ronneberger et al., MICCAI 2015) trained on HR images and tissue labels (``task: segmentation``), so the loss
weighs what matters for telling tissues apart. It is added to the pixel loss with weights from the config
(e.g. after an L1 stage: ``[{type: l1, weight: 1}, {type: seg_perceptual, weight: 10, weights: ...}]``).
The UNet is held outside the trainee's module tree: frozen, in no optimizer and no state dict.
"""

from __future__ import annotations

from typing import Sequence

from medsr.losses.perceptual import PerceptualLoss
from medsr.registry import LOSSES

LAYER_SETS = ("all", "encoder", "decoder")


@LOSSES.register("seg_perceptual")
class SegPerceptualLoss(PerceptualLoss):
    """``weights``: a ``unet`` weights file; ``layers``: which features count (``all``, ``encoder`` = full
    resolution down to the bottleneck, ``decoder`` = the up path); ``layer_weights`` overrides with one weight
    per feature (``2 * depth + 1`` of them)."""

    def __init__(self, weights: str, layers: str = "all", layer_weights: Sequence[float] | None = None):
        if layers not in LAYER_SETS:
            raise ValueError(f"layers must be one of {', '.join(LAYER_SETS)}, got {layers!r}")
        super().__init__(weights, layer_weights)
        if layer_weights is None:
            n_enc, n_dec = self.net.depth + 1, self.net.depth
            self.layer_weights = [float(layers != "decoder")] * n_enc + [float(layers != "encoder")] * n_dec
