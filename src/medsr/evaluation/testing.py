"""``medsr test``: the model of a weights file (plus extra ones and the bicubic and zero-filling baselines) scored
scale by scale on whole volumes under the protocol of :mod:`medsr.evaluation.scores`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from medsr.checkpoint import build_from_weights, weights_path
from medsr.data.datasets import SRSliceDataset
from medsr.errors import InputError
from medsr.evaluation.report import summary_cell, t_interval
from medsr.evaluation.scores import PROTOCOL, evaluate_scale, moments, summarise
from medsr.kspace import check_scale, lr_length
from medsr.models.base import SRModel, sr_model
from medsr.registry import MODELS, PROTOCOLS


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


@dataclass(frozen=True)
class TestProtocol:
    """What ``medsr test`` does with the weights of one task, registered in ``PROTOCOLS`` under the task's name
    (the weights' ``meta.task``): ``run(setup, model, meta) -> report`` (``{"protocol": {...}, "results": [...]}``),
    ``table(report) -> (columns, rows)``, ``label`` (how refusals name such weights) and ``options``, the
    optional flags of ``medsr test`` it reads (``scales``, ``ref``, ``target``); giving another is an error."""

    run: Callable[[TestSetup, nn.Module, dict[str, Any]], dict[str, Any]]
    table: Callable[[dict[str, Any]], tuple[list[str], list[list[Any]]]]
    label: str
    options: tuple[str, ...] = ("scales", "ref", "target")


def parse_scales(text: str, flag: str = "--scales") -> tuple[float, ...]:
    """``"1.5,2,4"`` -> ``(1.5, 2.0, 4.0)``; each must be a number in [1, 16]."""
    try:
        scales = tuple(check_scale(v.strip()) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise InputError(flag, str(err)) from None
    if not scales:
        raise InputError(flag, "no scale given")
    return scales


def default_scales(net: Any, scales: Sequence[float]) -> tuple[float, ...]:
    """``scales`` (the default test scales) plus the fixed scales ``net`` was trained for, so a reconstruction
    model (fixed x1) or a fixed-x5 model is always tested at its own scale."""
    fixed = net.fixed_scales if isinstance(net, SRModel) else None  # other models are refused by run_test
    return tuple(sorted({float(s) for s in scales} | {float(s) for s in fixed or ()}))


@dataclass
class Method:
    """One row source of a test: a network, its reference mode, trained scales and input depth."""

    name: str
    net: nn.Module
    ref: str
    trained: Sequence[float] | None
    n_adjacent: int = 0
    baseline: bool = False


def _methods(setup: TestSetup, main: tuple[nn.Module, dict[str, Any]] | None = None
             ) -> tuple[list[Method], dict[str, Any]]:
    methods, main_meta = [], {}
    for i, path in enumerate((weights_path(setup.weights), *setup.extra)):
        model, meta = main if i == 0 and main is not None else build_from_weights(path, task="sr")
        model = sr_model(model, path)
        main_meta = main_meta or {**meta, "path": path}
        name = meta["model"]["type"] + ("" if i == 0 else f" ({Path(path).stem})")
        ref = setup.ref if model.uses_ref else "none"
        methods.append(Method(name, model.to(setup.device), ref, meta.get("scales"), int(meta.get("n_adjacent", 0))))
    if setup.baselines:
        methods += [Method(n, MODELS.build({"type": n}).to(setup.device), "none", None, baseline=True)
                    for n in BASELINES]
    return methods, main_meta


def unsupported(net: Any, dataset: Any, scale: float) -> str | None:
    """Why a fixed-scale model cannot be tested at ``scale`` (a scale it lacks, or slices that are not a whole
    multiple of their LR size), or None when it can; such rows are reported as n/a with this reason."""
    fixed = net.fixed_scales
    if fixed is None:
        return None
    if scale not in fixed:
        return f"n/a: fixed scales {', '.join(f'x{s:g}' for s in fixed)} only"
    shapes = {dataset.slice_shape(sid) for sid in dataset.subjects}
    if not all(lr_length(n, scale) * scale == n for shape in shapes for n in shape):
        return f"n/a: slices {sorted(shapes)} are not a multiple of x{scale:g}"
    return None


def run_test(setup: TestSetup, main: tuple[nn.Module, dict[str, Any]] | None = None
             ) -> tuple[dict[str, Any], dict[tuple[str, float], dict[str, torch.Tensor]]]:
    """Evaluate the model of ``setup.weights`` (the ``extra`` ones, bicubic and zero-filling) at every scale;
    ``main``: that model and meta when the caller has already read them (not read again).

    Returns the report ``{"protocol": {...}, "results": [{"method", "scale", "ref", "psnr", "psnr_std", "psnr_ci",
    "ssim", "ssim_std", "ssim_ci", "n_volumes", "ood", "note"}]}`` (``*_ci``: 95% t-interval over volumes) (``note``: why a row is n/a, else None) and, per ``(method, scale)``, a 2-D sample ``{"lr", "sr", "hr"}``.
    """
    methods, meta = _methods(setup, main)
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
            reason = unsupported(m.net, dataset, scale)
            if reason is None:
                scores, samples[(m.name, scale)] = evaluate_scale(
                    m.net, dataset, scale, m.ref, ref_scale=setup.ref_scale if m.ref == "lr" else None,
                    device=setup.device, batch_size=setup.batch_size)
            s = summarise(moments(scores))
            results.append({"method": m.name, "scale": scale, "ref": m.ref, "psnr": s.psnr, "psnr_std": s.psnr_std,
                            "psnr_ci": t_interval(s.psnr, s.psnr_std, s.n_volumes), "ssim": s.ssim,
                            "ssim_std": s.ssim_std, "ssim_ci": t_interval(s.ssim, s.ssim_std, s.n_volumes),
                            "n_volumes": s.n_volumes,
                            "ood": not m.baseline and is_ood(scale, m.trained), "note": reason})
    trained = meta.get("scales")
    protocol = {
        **PROTOCOL,
        "weights": ", ".join(str(p) for p in (meta["path"], *setup.extra)),
        "data": str(setup.data),
        "split": setup.split,
        "contrasts": f"target {target}, reference {ref_contrast or 'none'}",
        "ref_mode": setup.ref if setup.ref != "lr" else f"lr at x{setup.ref_scale or 'target scale'}",
        "scales_trained": f"{trained[0]:g}-{trained[1]:g}" if trained else "unknown",
        "volumes": len(next(iter(datasets.values())).subjects),
    }
    return {"protocol": protocol, "results": results}, samples


def results_table(report: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows (one per scale and method) of a :func:`run_test` report, OOD scales marked, scales a
    fixed-scale model cannot do as n/a."""
    columns = ["scale", "method", "ref", "PSNR (dB) ± sd [95% CI]", "SSIM ± sd [95% CI]", "volumes", "note"]

    def cell(r: Mapping[str, Any], key: str, digits: int) -> str:
        return "n/a" if r["n_volumes"] == 0 else summary_cell(r, key, digits)

    rows = [[f"x{r['scale']:g}", r["method"], r["ref"], cell(r, "psnr", 2), cell(r, "ssim", 4), r["n_volumes"],
             r.get("note") or ("OOD" if r["ood"] else "")] for r in report["results"]]
    return columns, rows


def run_sr_test(setup: TestSetup, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """The report of :func:`run_test` for ``model`` (read from ``setup.weights`` by ``medsr test``)."""
    return run_test(setup, (model, meta))[0]


PROTOCOLS.register("sr")(TestProtocol(run_sr_test, results_table, "super-resolution"))
