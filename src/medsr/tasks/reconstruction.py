"""``task: reconstruction``: undersampled image -> fully sampled image on the same grid (the clean LR of
:class:`~medsr.data.undersampled.JointSliceDataset`; at scale 1 the HR slice itself), e.g. MTrans' reconstruction
setting (random mask, R 4, centre 0.08; Feng et al., "Multi-Modal Transformer for Accelerated MR Imaging",
IEEE TMI 2022).

Everything is :class:`~medsr.tasks.joint.JointTask`'s (data, masks, k-space keywords, validation, exported
degradation) except the target of the loss list, ``lr_clean``, the model's output size (the input's) and the
branch that selects ``best.ckpt`` (``val/psnr`` = the reconstruction's mean PSNR over scales).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from medsr.models.base import Output
from medsr.registry import TASKS
from medsr.tasks.joint import JointTask


@TASKS.register("reconstruction")
class ReconstructionTask(JointTask):
    """Trains a scale-1 model (e.g. ``dc_cascade``) on ``{lr, kspace, mask} -> lr_clean``."""

    branch = "recon"
    adversarial_target = "lr_clean"

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], Output]:
        target = batch["lr_clean"]
        output = self.model(batch["lr"], tuple(target.shape[-2:]), None, **self.measurements(batch))
        loss, terms = self.criterion(output, target, batch)
        return loss, terms, output
