"""Auxiliary semantic loss of the ``sakg`` model: cross-entropy between its tissue logits and the labels.

The model predicts tissue logits at LR resolution for its semantic prior and keeps the centre slice's in
``last_aux`` during training; this loss reads them through the model it is attached to (``attach(model)``, called
by the training module), upsamples them bilinearly to the HR grid and compares them with ``batch["label"]``.
Labels are used only here, never at test time.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from medsr.registry import LOSSES


@LOSSES.register("sakg_semantic")
class SemanticAuxLoss(nn.Module):
    """``CE(upsample(logits), label)``; zero when the model's semantic component is switched off.

    ``class_weights`` (optional, one per class) rebalance the cross-entropy.
    """

    def __init__(self, class_weights: list[float] | None = None):
        super().__init__()
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self._model: list[nn.Module] = []

    def attach(self, model: nn.Module) -> None:
        if not hasattr(model, "pop_aux"):
            raise ValueError(f"sakg_semantic needs a model with semantic logits (pop_aux), not {type(model).__name__}")
        self._model = [model]

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        if not self._model:
            raise ValueError("sakg_semantic is not attached to a model")
        logits = self._model[0].pop_aux()
        if logits is None:
            return sr.new_zeros(())
        if "label" not in batch:
            raise ValueError("sakg_semantic needs tissue labels in the batch (data.use_labels: true)")
        label = batch["label"]
        up = F.interpolate(logits.float(), size=tuple(label.shape[-2:]), mode="bilinear", align_corners=False)
        weight = None if self.class_weights is None else self.class_weights.to(up.device)
        return F.cross_entropy(up, label.long(), weight=weight)
