"""Evaluation of undersampled-input models, branch by branch, with the fastMRI per-volume metrics.

Protocol (:data:`PROTOCOL`): every slice of every subject of a split is degraded as in training (k-space crop to
the scale, then the subject's mask on the LR grid; :class:`~medsr.data.undersampled.JointSliceDataset`) and restored
whole. Branches: ``recon`` (the reconstruction on the LR grid against the clean, fully sampled LR) and ``sr``
(the HR output against the HR slices). Per volume (a subject's slices stacked): PSNR with data range = the
maximum of the target volume, SSIM as scikit-image's defaults (7 x 7 uniform window, sample covariance, same
data range, mean over slices), NMSE ``||x - y||^2 / ||y||^2`` -- fastMRI's evaluation (Zbontar et al., 2018).
A model that is not joint is scored on the branch it has: reconstruction models (scale 1) on ``recon``, SR models
(given the undersampled input) on ``sr``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from medsr.data.datasets import eval_specs
from medsr.evaluation.scores import collate, volume_batches
from medsr.metrics.image import nmse, psnr, ssim
from medsr.models.base import as_image
from medsr.models.undersampled import JointSRModel

PROTOCOL = {
    "unit": "volume (all slices of a subject stacked)",
    "metrics": "fastMRI: PSNR and SSIM (7x7 uniform window, sample covariance, K1 0.01, K2 0.03, mean over "
               "slices) with data range = max of the target volume; NMSE = ||x - y||^2 / ||y||^2",
    "branches": "recon: reconstruction vs the clean LR (fully sampled, same grid); sr: SR output vs HR",
    "degradation": "k-space crop to the scale, then the subject's mask (seeded by its id) on the grid of data.mask",
    "spread": "mean ± sample std [95% t-interval of the mean] over volumes",
}
BRANCHES = ("recon", "sr")


@dataclass(frozen=True)
class BranchScore:
    """Metrics of one subject's volume on one branch."""

    subject: str
    branch: str
    psnr: float
    ssim: float
    nmse: float


def branch_outputs(model: nn.Module, batch: Mapping[str, Any], device: torch.device | str
                   ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{branch: (prediction [B, H, W], target [B, H, W])}`` of one batch (CPU, float32)."""
    lr, hr = batch["lr"].to(device), batch["hr"]
    ref = batch["ref"].to(device) if "ref" in batch and model.uses_ref else None
    kwargs = {"mask": batch["mask"].to(device), "kspace": batch["kspace"].to(device)} if model.uses_kspace else {}
    clean = batch["lr_clean"][:, 0].float()
    if isinstance(model, JointSRModel):
        out = model.joint(lr, tuple(hr.shape[-2:]), ref, kwargs.get("mask"), kwargs.get("kspace"))
        return {"recon": (out.aux["recon"][:, 0].float().cpu(), clean), "sr": (out.image[:, 0].float().cpu(),
                                                                               hr[:, 0].float())}
    if model.fixed_scales == (1,):
        return {"recon": (as_image(model(lr, tuple(lr.shape[-2:]), None, **kwargs))[:, 0].float().cpu(), clean)}
    return {"sr": (as_image(model(lr, tuple(hr.shape[-2:]), ref, **kwargs))[:, 0].float().cpu(), hr[:, 0].float())}


@torch.no_grad()
def predict_branches(model: nn.Module, dataset: Any, specs: Sequence[Any], *, device: torch.device | str = "cpu",
                     batch_size: int = 8, subjects: set[str] | None = None
                     ) -> Iterator[tuple[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]]:
    """Yield ``(subject, {branch: (prediction [Z, ., .], target [Z, ., .])})`` per subject."""
    model.eval()
    parts: dict[str, list[dict[str, tuple[torch.Tensor, torch.Tensor]]]] = {}
    for sid, chunk in volume_batches(dataset, specs, batch_size, subjects):
        if sid not in parts and parts:
            done = next(iter(parts))
            yield done, _stack(parts.pop(done))
        parts.setdefault(sid, []).append(branch_outputs(model, collate([dataset[s] for s in chunk]), device))
    for sid, chunks in parts.items():
        yield sid, _stack(chunks)


def _stack(chunks: list[dict[str, tuple[torch.Tensor, torch.Tensor]]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {b: (torch.cat([c[b][0] for c in chunks]), torch.cat([c[b][1] for c in chunks])) for b in chunks[0]}


def fastmri_scores(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float, float]:
    """``(PSNR, SSIM, NMSE)`` of a ``[Z, H, W]`` volume under :data:`PROTOCOL`."""
    x, y = pred.double()[None, None], target.double()[None, None]
    peak = max(float(y.max()), 1e-12)
    return (float(psnr(x, y, data_range=peak)[0]), float(ssim(x, y, data_range=peak, preset="fastmri")[0]),
            float(nmse(x, y)[0]))


def evaluate_joint(model: nn.Module, dataset: Any, scale: float, ref_mode: str = "none", *,
                   ref_scale: float | None = None, device: torch.device | str = "cpu", batch_size: int = 8,
                   subjects: Sequence[str] | None = None) -> list[BranchScore]:
    """Per-volume, per-branch scores of ``model`` on ``dataset`` (a JointSliceDataset) at ``scale``."""
    ref_pair = (scale if ref_scale is None else ref_scale) if ref_mode == "lr" else None
    specs = eval_specs(dataset, scale, ref_mode, ref_pair)
    wanted = set(subjects) if subjects is not None else None
    return [BranchScore(sid, branch, *fastmri_scores(pred, target))
            for sid, outputs in predict_branches(model, dataset, specs, device=device, batch_size=batch_size,
                                                 subjects=wanted)
            for branch, (pred, target) in outputs.items()]
