"""Auxiliary semantic loss of the ``sakg`` model: cross-entropy between its tissue logits and the labels.

The model predicts tissue logits at LR resolution for its semantic prior and returns the centre slice's from a
training forward (``ModelOutput.aux["semantic"]``); this loss takes that output, upsamples the logits bilinearly
to the HR grid and compares them with ``batch["label"]``. Labels are used only here, never at test time.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.base import ModelOutput, Output
from medsr.losses.base import Loss
from medsr.registry import LOSSES


@LOSSES.register("sakg_semantic")
class SemanticAuxLoss(Loss):
    """``CE(upsample(logits), label)``; zero when the model's semantic component is switched off.

    ``class_weights`` (optional, one per class) rebalance the cross-entropy. ``output`` is the whole training
    output of the model (a :class:`ModelOutput`).
    """

    needs_aux = "semantic"

    def __init__(self, class_weights: list[float] | None = None):
        super().__init__()
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)

    def forward(self, output: Output, target: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        if not isinstance(output, ModelOutput):
            raise ValueError("sakg_semantic needs the ModelOutput of a training forward (model.train())")
        logits = output.aux.get("semantic")
        if logits is None:
            return output.image.new_zeros(())
        if "label" not in batch:
            raise ValueError("sakg_semantic needs tissue labels in the batch (data.use_labels: true)")
        label = batch["label"]
        up = F.interpolate(logits.float(), size=tuple(label.shape[-2:]), mode="bilinear", align_corners=False)
        weight = None if self.class_weights is None else self.class_weights.to(up.device)
        return F.cross_entropy(up, label.long(), weight=weight)
