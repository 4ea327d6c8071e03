"""Scale-by-scale evaluation on whole volumes, shared by validation, ``medsr test``, ``medsr demo`` and the
quality benchmark.


Protocol: every slice of every subject of a split is degraded in k-space at the scale under test
(``medsr.kspace.downsample``) and super-resolved whole; the slices of each subject are stacked into a volume, and
PSNR and SSIM are computed per volume in normalised units (the volume divided by its 99.5th percentile) with
data range = max - min of the HR volume. SSIM is Wang et al. 2004 (Gaussian window 11x11, sigma 1.5), averaged
over the slices of the volume. No mask, no border crop, no clamping of the output. Figures are mean and
sample standard deviation (ddof 1, as ``medsr evaluate`` reports) over volumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from medsr.data.datasets import VolumeIndex, eval_specs
from medsr.metrics.image import psnr, ssim
from medsr.models.base import as_image

PROTOCOL = {
    "unit": "volume (all slices of a subject stacked)",
    "normalisation": "volume / 99.5th percentile of its non-zero voxels",
    "data_range": "gt-range: max - min of the HR volume (normalised units)",
    "ssim": "wang: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, mean of 2-D SSIM over slices",
    "mask": "none",
    "crop": 0,
    "degradation": "k-space centre crop (medsr.kspace.downsample), round(N / s) samples per axis",
    "spread": "mean ± sample std (ddof 1) [95% t-interval of the mean, not clipped to the metric's range] over "
              "volumes; n/a for one volume",
}


@dataclass(frozen=True)
class VolumeScore:
    """Metrics of one subject's volume at one scale."""

    subject: str
    psnr: float
    ssim: float
    data_range: float


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than two volumes) over volumes."""

    psnr: float
    psnr_std: float
    ssim: float
    ssim_std: float
    n_volumes: int


def volume_score(subject: str, sr: torch.Tensor, hr: torch.Tensor) -> VolumeScore:
    """PSNR/SSIM of a ``[Z, H, W]`` prediction against its HR volume under :data:`PROTOCOL`."""
    sr, hr = sr.double()[None, None], hr.double()[None, None]
    data_range = float(hr.max() - hr.min())
    peak = max(data_range, 1e-12)
    return VolumeScore(
        subject,
        float(psnr(sr, hr, data_range=peak)[0]),
        float(ssim(sr, hr, data_range=peak, volume_mode="slices")[0]),
        data_range,
    )


BRAIN_MASK = ("brain mask from the HR volume: HR > {fraction:g} x its 99th percentile, holes filled per slice "
              "(scipy binary_fill_holes); masked PSNR = MSE over the mask, masked SSIM = mean SSIM map over the mask")
MASK_FRACTION = 0.1


def brain_mask(hr: torch.Tensor, fraction: float = MASK_FRACTION) -> torch.Tensor:
    """Boolean foreground mask of an HR volume ``[Z, H, W]`` (:data:`BRAIN_MASK`): pixels above ``fraction`` of
    the volume's 99th percentile, with the holes of each slice filled."""
    values = hr.detach().double().cpu().numpy()
    above = values > fraction * np.percentile(values, 99.0)
    filled = np.stack([ndimage.binary_fill_holes(z) for z in above])
    return torch.from_numpy(filled)


def masked_score(sr: torch.Tensor, hr: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """``(psnr, ssim)`` of a ``[Z, H, W]`` prediction inside ``mask`` (data range as :func:`volume_score`)."""
    sr, hr = sr.double()[None, None], hr.double()[None, None]
    peak = max(float(hr.max() - hr.min()), 1e-12)
    m = mask[None, None].to(torch.bool)
    return float(psnr(sr, hr, data_range=peak, mask=m)[0]), float(ssim(sr, hr, data_range=peak, mask=m)[0])


def moments(scores: Sequence[VolumeScore]) -> torch.Tensor:
    """``[n, sum psnr, sum psnr^2, sum ssim, sum ssim^2]`` in float64: what ranks add up before summarising."""
    p = torch.tensor([s.psnr for s in scores], dtype=torch.float64)
    q = torch.tensor([s.ssim for s in scores], dtype=torch.float64)
    n = torch.tensor(float(len(scores)), dtype=torch.float64)
    return torch.stack([n, p.sum(), (p**2).sum(), q.sum(), (q**2).sum()])


def summarise(totals: torch.Tensor) -> Summary:
    """Mean and std from summed :func:`moments` (so ranks are reduced exactly, not as a mean of means)."""
    n, sp, sp2, sq, sq2 = (float(v) for v in totals)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, 0)

    def std(total: float, squares: float) -> float:
        return math.sqrt(max(squares - total * total / n, 0.0) / (n - 1)) if n > 1 else math.nan

    return Summary(sp / n, std(sp, sp2), sq / n, std(sq, sq2), int(n))


def subjects_of(dataset: VolumeIndex, specs: Sequence[Any]) -> list[str]:
    """Subject id of each spec, from the dataset's volume index."""
    return [dataset.subject_of(spec.index) for spec in specs]


def volume_batches(
    dataset: Any, specs: Sequence[Any], batch_size: int, subjects: set[str] | None = None
) -> Iterator[tuple[str, list[Any]]]:
    """Batches of specs that never mix subjects, in order; only subjects in ``subjects`` when given."""
    current: str | None = None
    chunk: list[Any] = []
    for sid, spec in zip(subjects_of(dataset, specs), specs):
        if subjects is not None and sid not in subjects:
            continue
        if chunk and (sid != current or len(chunk) == batch_size):
            yield current, chunk
            chunk = []
        current = sid
        chunk.append(spec)
    if chunk:
        yield current, chunk


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return torch.utils.data.default_collate(list(items))


@torch.no_grad()
def predict_volumes(
    model: nn.Module,
    dataset: Any,
    specs: Sequence[Any],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    subjects: set[str] | None = None,
    on_batch: Callable[[Mapping[str, Any]], None] | None = None,
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(subject, sr [Z, H, W], hr [Z, H, W], lr [Z, h, w])`` per subject (CPU, float32); ``lr`` holds
    the centre (target) slice of each input stack. ``on_batch(batch)`` runs before each forward (benchmarks use
    it to hand a batch's labels to a probe)."""
    model.eval()
    parts: dict[str, list[tuple[torch.Tensor, ...]]] = {}
    for sid, chunk in volume_batches(dataset, specs, batch_size, subjects):
        if sid not in parts and parts:
            done = next(iter(parts))
            yield done, *(torch.cat(p) for p in zip(*parts.pop(done)))
        batch = collate([dataset[spec] for spec in chunk])
        lr, hr = batch["lr"], batch["hr"]
        ref = batch["ref"].to(device) if "ref" in batch else None
        if on_batch is not None:
            on_batch(batch)
        sr = as_image(model(lr.to(device), tuple(hr.shape[-2:]), ref)).float().cpu()
        parts.setdefault(sid, []).append((sr[:, 0], hr[:, 0].float(), lr[:, lr.shape[1] // 2].float()))
    for sid, chunks in parts.items():
        yield sid, *(torch.cat(p) for p in zip(*chunks))


def evaluate_scale(
    model: nn.Module,
    dataset: Any,
    scale: float | Sequence[float],
    ref_mode: str,
    *,
    ref_scale: float | Sequence[float] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    subjects: Sequence[str] | None = None,
) -> tuple[list[VolumeScore], dict[str, torch.Tensor]]:
    """Per-volume scores of ``model`` at one scale (only the given subjects when set), and a sample
    ``{"lr", "sr", "hr"}`` (2-D: the middle slice of the first subject) for figures."""
    ref_pair = (scale if ref_scale is None else ref_scale) if ref_mode == "lr" else None
    specs = eval_specs(dataset, scale, ref_mode, ref_pair)
    scores: list[VolumeScore] = []
    sample: dict[str, torch.Tensor] = {}
    wanted = set(subjects) if subjects is not None else None
    for sid, sr, hr, lr in predict_volumes(model, dataset, specs, device=device, batch_size=batch_size,
                                           subjects=wanted):
        scores.append(volume_score(sid, sr, hr))
        if not sample:
            z = sr.shape[0] // 2
            sample = {"lr": lr[z], "sr": sr[z], "hr": hr[z]}
    return scores, sample
