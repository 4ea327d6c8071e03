"""``medsr test`` for CT denoising weights: the network on every volume of a CT pair store's split, through
:func:`medsr.inference.denoise.denoise_slices` (the path of validation, the benchmarks and ``medsr denoise``),
beside the low-dose input, scored in the windows the weights were validated in
(:data:`medsr.metrics.ct.DENOISE_WINDOWS`) per slice, averaged per volume; volumes are the unit: mean,
sample standard deviation and 95 % t-interval over volumes (:func:`medsr.evaluation.report.summarise`)."""

from __future__ import annotations

from typing import Any

from medsr.data.ct_pairs import CTPairDataset
from medsr.evaluation.report import summarise, summary_cell
from medsr.evaluation.testing import TestProtocol
from medsr.inference.denoise import denoise_slices
from medsr.inference.planes import InferenceOptions
from medsr.metrics.ct import CT_PRESETS, DENOISE_WINDOWS, reduction_text, scores_in_windows
from medsr.registry import PROTOCOLS


def run_denoise_test(setup: Any, model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """Report ``{"protocol", "results": [{"method", "window", "psnr", "psnr_std", "psnr_ci", "ssim", "ssim_std",
    "ssim_ci", "n_volumes"}]}`` of ``model`` (and the low-dose input) on ``setup`` (a :class:`~.TestSetup`)."""
    dataset = CTPairDataset(setup.data, setup.split)
    options = InferenceOptions(batch_size=setup.batch_size, device=setup.device, progress=False)
    net = model.to(setup.device)
    name = str(meta["model"]["type"])
    scores: dict[str, list[dict[str, float]]] = {name: [], "low dose": []}
    for _, ld, fd in dataset.volumes():
        scores[name].append(scores_in_windows(denoise_slices(net, ld, options), fd, DENOISE_WINDOWS))
        if setup.baselines:
            scores["low dose"].append(scores_in_windows(ld, fd, DENOISE_WINDOWS))
    results = []
    for method, per_volume in scores.items():
        if not per_volume:
            continue
        for window in DENOISE_WINDOWS:
            p, q = (summarise([v[f"{m}_{window}"] for v in per_volume]) for m in ("psnr", "ssim"))
            results.append({"method": method, "window": window, "psnr": p.mean, "psnr_std": p.std,
                            "psnr_ci": (p.ci95_low, p.ci95_high), "ssim": q.mean, "ssim_std": q.std,
                            "ssim_ci": (q.ci95_low, q.ci95_high), "n_volumes": len(per_volume)})
    windows = "; ".join(f"{w} [{CT_PRESETS[w].low:g}, {CT_PRESETS[w].high:g}] HU, SSIM {CT_PRESETS[w].ssim_preset}"
                        for w in DENOISE_WINDOWS)
    protocol = {"task": "denoise (CT, HU)", "weights": str(setup.weights), "data": str(setup.data),
                "split": setup.split, "volumes": len(scores[name]), "windows": windows,
                "images": "clipped to the window, data range = its width",
                "reduction": f"{reduction_text('slice')} of a volume; volumes are the unit",
                "statistics": "mean ± sample std [95% t-interval] over volumes",
                "inference": "medsr.inference.denoise.denoise_slices: whole slices, the weights' normalisation "
                             f"{meta.get('norm', {}).get('formula', 'unknown')}"}
    return {"protocol": protocol, "results": results}


def denoise_table(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of a :func:`run_denoise_test` report."""
    columns = ["window", "method", "PSNR (dB) ± sd [95% CI]", "SSIM ± sd [95% CI]", "volumes"]
    rows = [[r["window"], r["method"], summary_cell(r, "psnr", 2), summary_cell(r, "ssim", 4), r["n_volumes"]]
            for r in report["results"]]
    return columns, rows


PROTOCOLS.register("denoise")(TestProtocol(run_denoise_test, denoise_table, "CT denoising", options=()))
