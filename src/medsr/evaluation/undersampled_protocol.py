"""``medsr test`` for reconstruction and joint weights: both branches (reconstruction vs the clean LR, SR vs HR)
per scale and effective acceleration, with the zero-filling baseline, under :mod:`medsr.evaluation.undersampled`.

The degradation is the one the weights were trained for (``meta["degradation"]``: mask kind, grid, acceleration,
field of view, intensity scale), rebuilt on the test split."""

from __future__ import annotations

from typing import Any

from medsr.data import masks
from medsr.data.datasets import SampleSpec
from medsr.data.undersampled import JointSliceDataset, protocol
from medsr.evaluation.undersampled import BRANCHES, PROTOCOL, evaluate_joint
from medsr.evaluation.report import summarise, summary_cell
from medsr.evaluation.testing import TestProtocol
from medsr.models.sequential import Sequential
from medsr.registry import PROTOCOLS


def mask_from_meta(degradation: dict[str, Any]) -> masks.MaskSpec:
    """The training mask of a weights file's ``degradation`` record."""
    return masks.parse_mask(degradation["mask"], degradation["acceleration"], degradation["center_fraction"],
                            degradation["grid"], degradation["file"])


def run_joint_test(setup: Any, model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """Report ``{"protocol", "results": [{"method", "scale", "R", "branch", "psnr", "psnr_std", "psnr_ci", "ssim",
    "ssim_std", "ssim_ci", "nmse", "n_volumes"}]}`` of ``model`` and zero-filling on ``setup`` (a :class:`~.evaluation.TestSetup`)."""
    deg = meta["degradation"]
    target = setup.target or meta.get("contrasts", {}).get("target")
    spec = mask_from_meta(deg)
    dataset = JointSliceDataset(setup.data, setup.split, target, mask=spec, fov=deg["fov"], intensity=deg["intensity"])
    methods = [(meta["model"]["type"], model.to(setup.device))]
    if setup.baselines:
        methods.append(("zero-filling", Sequential({"type": "zerofill"}).to(setup.device)))
    results = []
    for scale in setup.scales:
        r = dataset[SampleSpec(index=0, scale=(scale, scale))]["acceleration"]
        branches: set[str] = set(BRANCHES)
        for name, net in methods:
            scores = evaluate_joint(net, dataset, scale, device=setup.device, batch_size=setup.batch_size)
            branches &= {s.branch for s in scores}  # the baseline is shown on the model's branches only
            for branch in sorted(branches):
                mine = [s for s in scores if s.branch == branch]
                p, q, e = (summarise([getattr(s, k) for s in mine]) for k in ("psnr", "ssim", "nmse"))
                results.append({"method": name, "scale": scale, "R": round(r, 2), "branch": branch,
                                "psnr": p.mean, "psnr_std": p.std, "psnr_ci": (p.ci95_low, p.ci95_high),
                                "ssim": q.mean, "ssim_std": q.std, "ssim_ci": (q.ci95_low, q.ci95_high),
                                "nmse": e.mean, "n_volumes": len(mine)})
    header = {**PROTOCOL, **protocol(deg["intensity"], deg["fov"]), "weights": str(setup.weights),
              "data": str(setup.data), "split": setup.split, "target": target,
              "mask": f"{spec.kind} on the {spec.grid.upper()} grid (trained R: {deg['effective_acceleration']}; "
                      f"counting conjugate mirrors of magnitude k-space: {deg.get('mirror_acceleration', 'not recorded')})"}
    return {"protocol": header, "results": results}


def joint_table(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of a :func:`run_joint_test` report."""
    columns = ["scale", "R", "branch", "method", "PSNR (dB) ± sd [95% CI]", "SSIM ± sd [95% CI]", "NMSE", "volumes"]
    rows = [[f"x{r['scale']:g}", f"{r['R']:.2f}", r["branch"], r["method"], summary_cell(r, "psnr", 2),
             summary_cell(r, "ssim", 4), f"{r['nmse']:.4f}", r["n_volumes"]] for r in report["results"]]
    return columns, rows


PROTOCOLS.register("reconstruction")(TestProtocol(run_joint_test, joint_table, "reconstruction"))
PROTOCOLS.register("joint")(TestProtocol(run_joint_test, joint_table, "joint reconstruction and super-resolution"))
