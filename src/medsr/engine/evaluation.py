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
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from medsr.errors import InputError

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
    n = torch.tensor(float(len(scores)), dtype=torch.float64)
    return torch.stack([n, p.sum(), (p**2).sum(), q.sum(), (q**2).sum()])


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
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield ``(subject, sr [Z, H, W], hr [Z, H, W], lr [Z, h, w])`` per subject (CPU, float32); ``lr`` holds
    the centre (target) slice of each input stack."""
    model.eval()
    parts: dict[str, list[tuple[torch.Tensor, ...]]] = {}
    for sid, chunk in volume_batches(dataset, specs, batch_size, subjects):
        if sid not in parts and parts:
            done = next(iter(parts))
            yield done, *(torch.cat(p) for p in zip(*parts.pop(done)))
        batch = collate([dataset[spec] for spec in chunk])
        lr, hr = batch["lr"], batch["hr"]
        ref = batch["ref"].to(device) if "ref" in batch else None
        sr = model(lr.to(device), tuple(hr.shape[-2:]), ref).float().cpu()
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
    from medsr.data.datasets import eval_specs

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


def is_ood(scale: float | Sequence[float], trained: Sequence[float] | None, tol: float = 1e-6) -> bool:
    """True when any axis' scale lies outside the trained range ``[lo, hi]`` (unknown range: never OOD)."""
    if not trained:
        return False
    values = [scale] if isinstance(scale, (int, float)) else list(scale)
    lo, hi = float(trained[0]), float(trained[1])
    return any(v < lo - tol or v > hi + tol for v in values)


BASELINES = ("bicubic", "zerofill")


@dataclass(frozen=True)
class TestSetup:
    """What ``medsr test`` evaluates: a weights file (plus ``extra`` ones side by side) on a store's split."""

    weights: Path
    data: Path
    scales: tuple[float, ...]
    ref: str
    ref_scale: float | None = None
    split: str = "test"
    target: str | None = None
    baselines: bool = True
    batch_size: int = 8
    device: str = "cpu"
    extra: tuple[Path, ...] = ()


def weights_path(path: str | Path) -> Path:
    """``path`` itself, or ``path/weights.pth`` for a run directory."""
    path = Path(path)
    return path / "weights.pth" if path.is_dir() else path


def parse_scales(text: str, flag: str = "--scales") -> tuple[float, ...]:
    """``"1.5,2,4"`` -> ``(1.5, 2.0, 4.0)``; each must be a number in [1, 16]."""
    from medsr.kspace import check_scale

    try:
        scales = tuple(check_scale(v.strip()) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise InputError(flag, str(err)) from None
    if not scales:
        raise InputError(flag, "no scale given")
    return scales


@dataclass
class Method:
    """One row source of a test: a network, its reference mode, trained scales and input depth."""

    name: str
    net: nn.Module
    ref: str
    trained: Sequence[float] | None
    n_adjacent: int = 0
    baseline: bool = False


def _methods(setup: TestSetup) -> tuple[list[Method], dict[str, Any]]:
    from medsr.checkpoint import build_from_weights
    from medsr.registry import MODELS

    methods, main_meta = [], {}
    for i, path in enumerate((weights_path(setup.weights), *setup.extra)):
        model, meta = build_from_weights(path, task="sr")
        main_meta = main_meta or {**meta, "path": path}
        name = meta["model"]["type"] + ("" if i == 0 else f" ({Path(path).stem})")
        ref = setup.ref if getattr(model, "uses_ref", True) else "none"
        methods.append(Method(name, model.to(setup.device), ref, meta.get("scales"), int(meta.get("n_adjacent", 0))))
    if setup.baselines:
        import medsr.models  # noqa: F401

        methods += [Method(n, MODELS.build({"type": n}).to(setup.device), "none", None, baseline=True)
                    for n in BASELINES]
    return methods, main_meta


def supports(net: nn.Module, dataset: Any, scale: float) -> bool:
    """False for a fixed-scale model at a scale it lacks, or where the store's slices are not a whole multiple of
    their LR size (such rows are reported as n/a)."""
    from medsr.kspace import lr_length

    fixed = getattr(net, "fixed_scales", None)
    if fixed is None:
        return True
    shapes = {dataset.store.shape(sid)[-2:] for sid in {sid for sid, _ in dataset.items}}
    return scale in fixed and all(lr_length(n, scale) * scale == n for shape in shapes for n in shape)


def run_test(setup: TestSetup) -> tuple[dict[str, Any], dict[tuple[str, float], dict[str, torch.Tensor]]]:
    """Evaluate the model of ``setup.weights`` (the ``extra`` ones, bicubic and zero-filling) at every scale.

    Returns the report ``{"protocol": {...}, "results": [{"method", "scale", "ref", "psnr", "psnr_std", "ssim",
    "ssim_std", "n_volumes", "ood"}]}`` and, per ``(method, scale)``, a 2-D sample ``{"lr", "sr", "hr"}``.
    """
    from medsr.data.datasets import SRSliceDataset

    methods, meta = _methods(setup)
    contrasts = meta.get("contrasts", {})
    target = setup.target or contrasts.get("target")
    if target is None:
        raise InputError("--target", f"{meta['path']} does not say which contrast it was trained on; give --target")
    ref_contrast = contrasts.get("ref") if setup.ref != "none" else None
    if setup.ref != "none" and ref_contrast is None:
        raise InputError("--ref", f"{meta['path']} was trained without a reference contrast; use --ref none")
    datasets: dict[int, Any] = {}
    results, samples = [], {}
    for scale in setup.scales:
        for m in methods:
            if m.n_adjacent not in datasets:
                datasets[m.n_adjacent] = SRSliceDataset(setup.data, setup.split, target, ref=ref_contrast,
                                                        n_adjacent=m.n_adjacent, use_labels=False)
            dataset = datasets[m.n_adjacent]
            scores = []
            if supports(m.net, dataset, scale):
                scores, samples[(m.name, scale)] = evaluate_scale(
                    m.net, dataset, scale, m.ref, ref_scale=setup.ref_scale if m.ref == "lr" else None,
                    device=setup.device, batch_size=setup.batch_size)
            s = summarise(moments(scores))
            results.append({"method": m.name, "scale": scale, "ref": m.ref, "psnr": s.psnr, "psnr_std": s.psnr_std,
                            "ssim": s.ssim, "ssim_std": s.ssim_std, "n_volumes": s.n_volumes,
                            "ood": not m.baseline and is_ood(scale, m.trained)})
    trained = meta.get("scales")
    protocol = {
        **PROTOCOL,
        "weights": ", ".join(str(p) for p in (meta["path"], *setup.extra)),
        "data": str(setup.data),
        "split": setup.split,
        "contrasts": f"target {target}, reference {ref_contrast or 'none'}",
        "ref_mode": setup.ref if setup.ref != "lr" else f"lr at x{setup.ref_scale or 'target scale'}",
        "scales_trained": f"{trained[0]:g}-{trained[1]:g}" if trained else "unknown",
        "volumes": len({sid for sid, _ in next(iter(datasets.values())).items}),
    }
    return {"protocol": protocol, "results": results}, samples


def results_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows (one per scale and method) of a :func:`run_test` report, OOD scales marked, scales a
    fixed-scale model cannot do as n/a."""
    columns = ["scale", "method", "ref", "PSNR (dB)", "SSIM", "volumes", "note"]

    def cell(r: Mapping[str, Any], key: str, digits: int) -> str:
        if r["n_volumes"] == 0:
            return "n/a"
        return f"{r[key]:.{digits}f} ± {r[key + '_std']:.{digits}f}"

    rows = [[f"x{r['scale']:g}", r["method"], r["ref"], cell(r, "psnr", 2), cell(r, "ssim", 4), r["n_volumes"],
             "OOD" if r["ood"] else ""] for r in report["results"]]
    return columns, rows
