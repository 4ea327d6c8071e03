"""Scale-by-scale evaluation on whole volumes, shared by validation, ``medsr test``, ``medsr demo`` and the
quality benchmark.

Protocol: every slice of every subject of a split is degraded in k-space at the scale under test
(``medsr.kspace.downsample``) and super-resolved whole; the slices of each subject are stacked into a volume, and
PSNR and SSIM are computed per volume in normalised units (the volume divided by its 99.5th percentile) with
data range = max - min of the HR volume. SSIM is Wang et al. 2004 (Gaussian window 11x11, sigma 1.5), averaged
over the slices of the volume. No mask, no border crop, no clamping of the output. Figures are mean and
standard deviation over volumes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

PROTOCOL = {
    "unit": "volume (all slices of a subject stacked)",
    "normalisation": "volume / 99.5th percentile of its non-zero voxels",
    "data_range": "gt-range: max - min of the HR volume (normalised units)",
    "ssim": "wang: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, mean of 2-D SSIM over slices",
    "mask": "none",
    "crop": 0,
    "degradation": "k-space centre crop (medsr.kspace.downsample), round(N / s) samples per axis",
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
    """Mean and standard deviation over volumes (population std, 0 for one volume)."""

    psnr: float
    psnr_std: float
    ssim: float
    ssim_std: float
    n_volumes: int


def volume_score(subject: str, sr: torch.Tensor, hr: torch.Tensor) -> VolumeScore:
    """PSNR/SSIM of a ``[Z, H, W]`` prediction against its HR volume under :data:`PROTOCOL`."""
    from medsr.metrics.image import psnr, ssim

    sr, hr = sr.double()[None, None], hr.double()[None, None]
    data_range = float(hr.max() - hr.min())
    peak = max(data_range, 1e-12)
    return VolumeScore(
        subject,
        float(psnr(sr, hr, data_range=peak)[0]),
        float(ssim(sr, hr, data_range=peak, volume_mode="slices")[0]),
        data_range,
    )


def moments(scores: Sequence[VolumeScore]) -> torch.Tensor:
    """``[n, sum psnr, sum psnr^2, sum ssim, sum ssim^2]`` in float64: what ranks add up before summarising."""
    p = torch.tensor([s.psnr for s in scores], dtype=torch.float64)
    q = torch.tensor([s.ssim for s in scores], dtype=torch.float64)
    return torch.stack([torch.tensor(float(len(scores)), dtype=torch.float64), p.sum(), (p**2).sum(), q.sum(), (q**2).sum()])


def summarise(totals: torch.Tensor) -> Summary:
    """Mean and std from summed :func:`moments` (so ranks are reduced exactly, not as a mean of means)."""
    n, sp, sp2, sq, sq2 = (float(v) for v in totals)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, 0)

    def std(total: float, squares: float) -> float:
        return math.sqrt(max(squares / n - (total / n) ** 2, 0.0))

    return Summary(sp / n, std(sp, sp2), sq / n, std(sq, sq2), int(n))


def subjects_of(dataset: Any, specs: Sequence[Any]) -> list[str]:
    """Subject id of each spec, from the dataset's ``(subject, z)`` index."""
    return [dataset.items[spec.index][0] for spec in specs]


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
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, dict[str, Any]]]:
    """Yield ``(subject, sr [Z, H, W], hr [Z, H, W], first batch)`` per subject, on the CPU in float32."""
    model.eval()
    current: str | None = None
    parts: list[tuple[torch.Tensor, torch.Tensor]] = []
    first: dict[str, Any] = {}
    for sid, chunk in volume_batches(dataset, specs, batch_size, subjects):
        if sid != current and parts:
            yield current, torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), first
            parts = []
        if sid != current:
            first = {}
        current = sid
        batch = collate([dataset[spec] for spec in chunk])
        lr, hr = batch["lr"].to(device), batch["hr"]
        ref = batch["ref"].to(device) if "ref" in batch else None
        sr = model(lr, tuple(hr.shape[-2:]), ref).float().cpu()
        if not first:
            first = {"lr": batch["lr"][:1], "sr": sr[:1], "hr": hr[:1]}
        parts.append((sr[:, 0], hr[:, 0].float()))
    if parts:
        yield current, torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), first


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
) -> tuple[list[VolumeScore], dict[str, Any]]:
    """Per-volume scores of ``model`` at one scale (only the given subjects when set), and a sample batch
    ``{"lr", "sr", "hr"}`` (first slice of the first subject) for figures."""
    from medsr.data.datasets import eval_specs

    pair = (float(scale), float(scale)) if isinstance(scale, (int, float)) else tuple(float(s) for s in scale)
    ref_pair = None
    if ref_mode == "lr":
        ref_pair = pair if ref_scale is None else (
            (float(ref_scale),) * 2 if isinstance(ref_scale, (int, float)) else tuple(float(s) for s in ref_scale)
        )
    specs = eval_specs(dataset, pair, ref_mode, ref_pair)
    scores: list[VolumeScore] = []
    sample: dict[str, Any] = {}
    wanted = set(subjects) if subjects is not None else None
    for sid, sr, hr, first in predict_volumes(model, dataset, specs, device=device, batch_size=batch_size,
                                              subjects=wanted):
        scores.append(volume_score(sid, sr, hr))
        sample = sample or first
    return scores, sample


def is_ood(scale: float | Sequence[float], trained: Sequence[float] | None, tol: float = 1e-6) -> bool:
    """True when any axis' scale lies outside the trained range ``[lo, hi]`` (unknown range: never OOD)."""
    if not trained:
        return False
    values = [scale] if isinstance(scale, (int, float)) else list(scale)
    lo, hi = float(trained[0]), float(trained[1])
    return any(v < lo - tol or v > hi + tol for v in values)
