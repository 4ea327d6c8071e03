"""Auxiliary reconstruction loss of the joint models (``task: joint``): L1 between the reconstruction on the LR
grid (``ModelOutput.aux["recon"]``) and the clean, fully sampled LR (``batch["lr_clean"]``). T2Net's protocol
weights it 0.2 against 0.8 for the SR L1 (Feng et al., MICCAI 2021)."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from medsr.losses.base import Loss
from medsr.models.base import ModelOutput, Output
from medsr.registry import LOSSES


@LOSSES.register("recon_l1")
class ReconstructionL1(Loss):
    """``mean |aux["recon"] - lr_clean|``; ``output`` is the whole training output of a joint model."""

    needs_aux = "recon"

    def forward(self, output: Output, target: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        if not isinstance(output, ModelOutput) or "recon" not in output.aux:
            raise ValueError("recon_l1 needs the ModelOutput of a joint model's training forward")
        if "lr_clean" not in batch:
            raise ValueError("recon_l1 needs the clean LR in the batch (task: joint, with data.mask)")
        return (output.aux["recon"] - batch["lr_clean"]).abs().mean()
