"""Transfer benchmark: ``medsr sr`` on real scans it never saw, against k-space zero-filling and bicubic.

The scans are the held-out cases of ``src/medsr/data/heldout.json`` (real MR images shipped inside the ``dipy``
and ``pydicom-data`` packages, none derived from the MNI template; source, licence and SHA-256 are recorded there
and checked here). Each is made low-resolution exactly by the project's contract, through the user's own
commands' code: ``medsr degrade`` (central k-space band on the pixel-centre grid, affine to match) in-plane, and
the slice-profile simulation of ``medsr degrade --slice-thickness`` through-plane; then ``medsr sr`` with the
given weights (default: the shipped ones) brings it back to the original grid.

Protocol: PSNR with data range = the original's maximum, and SSIM (Wang et al. 2004, 11x11 Gaussian, same data
range, averaged over slices), per case over the whole field of view (no mask, no crop). No case has a second
contrast of the same subject, so every row is without reference.

    python benchmarks/transfer.py [--weights W] [--scales 1.5,2,2.5,3,4] [--through 2,3] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SYNTH_FOV = 144  # side of the synthetic evaluation slices
SYNTH_SEED = 10**9  # evaluation seeds start here; training seeds come from (run seed, step), far below
MIN_THROUGH_SLICES = 8  # volumes with at least this many slices also get through-plane rows
PROTOCOL = ("PSNR: data range = max of the original; SSIM: Wang 2004, 11x11 Gaussian sigma 1.5, same data range, "
            "mean over slices; whole field of view, no mask, no crop; no reference (no case has a second contrast "
            "of the same subject)")


def load_case(case: dict[str, Any]) -> tuple[np.ndarray, tuple[float, ...]]:
    """The case's image as a float32 ``[X, Y, Z]`` volume (2-D images get Z = 1) and its voxel size in mm."""
    import nibabel as nib
    import pydicom

    from medsr.data.heldout import verified_path

    path = verified_path(case)
    if case["kind"] == "npy2d":
        volume, voxel = np.load(path)[:, :, None], tuple(case["voxel_mm"]) + (1.0,)
    elif case["kind"] == "nifti":
        volume, voxel = np.asarray(nib.load(path).dataobj, dtype=np.float32), tuple(case["voxel_mm"])
        volume = volume.reshape(volume.shape[:3])
    else:
        ds = pydicom.dcmread(path)
        volume = ds.pixel_array.astype(np.float32)[:, :, None]
        voxel = tuple(float(v) for v in ds.PixelSpacing) + (float(ds.get("SliceThickness", 1.0)),)
    if "crop" in case:
        (cx, cy), (X, Y) = case["crop"], volume.shape[:2]
        volume = volume[(X - cx) // 2 : (X - cx) // 2 + cx, (Y - cy) // 2 : (Y - cy) // 2 + cy]
    return np.ascontiguousarray(volume, dtype=np.float32), voxel


def write_nifti(path: Path, volume: np.ndarray, voxel: tuple[float, ...]) -> None:
    import nibabel as nib

    image = nib.Nifti1Image(volume.astype(np.float32), np.diag([*voxel, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))


def scores(pred: np.ndarray, hr: np.ndarray) -> dict[str, float]:
    """PSNR and slice-mean SSIM of ``[X, Y, Z]`` volumes (data range = max of ``hr``)."""
    import torch

    from medsr.metrics.image import psnr, ssim

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, 2, 0), dtype=np.float64))[None, None]

    peak = float(hr.max())
    return {"psnr": float(psnr(t(pred), t(hr), peak)[0]), "ssim": float(ssim(t(pred), t(hr), peak)[0])}


def inplane_baselines(lr: np.ndarray, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """k-space zero-filling and bicubic of every Z slice of ``lr [x, y, Z]`` to ``size``."""
    import torch
    import torch.nn.functional as F

    from medsr.kspace import zero_fill_upsample

    planes = torch.from_numpy(np.ascontiguousarray(np.moveaxis(lr, 2, 0)))[:, None]
    zf = zero_fill_upsample(planes, size)
    bic = F.interpolate(planes, size=size, mode="bicubic", align_corners=False)
    return {name: np.moveaxis(out[:, 0].numpy(), 0, 2) for name, out in (("zero-filling", zf), ("bicubic", bic))}


def run_sr(lr_path: Path, out_path: Path, scale: tuple[float, float, float], weights: str | None) -> np.ndarray:
    import nibabel as nib

    from medsr.infer.super_resolve import super_resolve_file

    super_resolve_file(lr_path, out_path, scale=",".join(repr(s) for s in scale), weights=weights, progress=False)
    return np.asarray(nib.load(str(out_path)).dataobj, dtype=np.float32)


def inplane_rows(case: dict[str, Any], hr: np.ndarray, voxel: tuple[float, ...], scales: list[float],
                 weights: str | None, tmp: Path) -> list[dict[str, Any]]:
    import nibabel as nib

    from medsr.data.degrade import Degradation, degrade_file

    hr_path = tmp / f"{case['id']}.nii.gz"
    write_nifti(hr_path, hr, voxel)
    rows = []
    for s in scales:
        lr_path, out_path = tmp / f"{case['id']}_x{s:g}.nii.gz", tmp / f"{case['id']}_x{s:g}_sr.nii.gz"
        degrade_file(hr_path, lr_path, Degradation(scale=(s, s)), axis=2)
        lr_image = nib.load(str(lr_path))
        lr = np.asarray(lr_image.dataobj, dtype=np.float32).reshape(lr_image.shape[:2] + hr.shape[2:])
        factors = (hr.shape[0] / lr.shape[0], hr.shape[1] / lr.shape[1], 1.0)
        start = time.perf_counter()
        outputs = {"medsr sr": run_sr(lr_path, out_path, factors, weights).reshape(hr.shape)}
        seconds = time.perf_counter() - start
        outputs.update(inplane_baselines(lr, hr.shape[:2]))
        for method, pred in outputs.items():
            rows.append({"case": case["id"], "direction": "in-plane", "scale": s, "method": method,
                         **scores(pred, hr), **({"seconds": seconds} if method == "medsr sr" else {})})
    return rows


def through_baseline(lr: np.ndarray, size: int) -> np.ndarray:
    """Cubic interpolation of ``lr [X, Y, z]`` along Z only (pixel-centre grid)."""
    import torch
    import torch.nn.functional as F

    planes = torch.from_numpy(np.ascontiguousarray(lr))[:, None]
    return F.interpolate(planes, size=(lr.shape[1], size), mode="bicubic", align_corners=False)[:, 0].numpy()


def through_rows(case: dict[str, Any], hr: np.ndarray, voxel: tuple[float, ...], factors: list[float],
                 weights: str | None, tmp: Path) -> list[dict[str, Any]]:
    """Thick slices along an axis that was acquired at in-plane resolution: the volume is reformatted so that
    its second in-plane axis becomes Z, then slices of thickness ``f`` voxels (Gaussian profile, FWHM =
    thickness, no gap) are simulated with ``medsr degrade --slice-thickness``'s code and super-resolved back."""
    import nibabel as nib

    from medsr.data.thick import ThickSlices, thick_slice_file

    volume = np.ascontiguousarray(np.moveaxis(hr, 1, 2))
    spacing = (voxel[0], voxel[2], voxel[1])
    hr_path = tmp / f"{case['id']}_reformatted.nii.gz"
    write_nifti(hr_path, volume, spacing)
    rows = []
    for f in factors:
        lr_path, out_path = tmp / f"{case['id']}_thick{f:g}.nii.gz", tmp / f"{case['id']}_thick{f:g}_sr.nii.gz"
        thick_slice_file(hr_path, lr_path, ThickSlices(thickness=f * spacing[2], gap=0.0, profile="gaussian"),
                         axis=2)
        lr = np.asarray(nib.load(str(lr_path)).dataobj, dtype=np.float32)
        start = time.perf_counter()
        outputs = {"medsr sr": run_sr(lr_path, out_path, (1.0, 1.0, volume.shape[2] / lr.shape[2]), weights)}
        seconds = time.perf_counter() - start
        outputs["cubic"] = through_baseline(lr, volume.shape[2])
        for method, pred in outputs.items():
            rows.append({"case": case["id"], "direction": "through-plane", "scale": f, "method": method,
                         **scores(pred, volume), **({"seconds": seconds} if method == "medsr sr" else {})})
    return rows


def synthetic_rows(weights: str | None, scales: list[float], data: Path, n_items: int) -> list[dict[str, Any]]:
    """Leak-reduced pairs with a reference: domain-randomised slices (``medsr.data.synth``) drawn from the label
    maps of the embedded data's TEST split at seeds no training run uses, target and reference rendered
    independently (so the target is no fixed function of the reference), whole 144x144 fields of view."""
    import torch

    from medsr.checkpoint import build_from_weights
    from medsr.config import SynthConfig
    from medsr.data.datasets import SampleSpec
    from medsr.data.embedded import ensure_mni
    from medsr.data.synth import SynthSliceDataset
    from medsr.infer.super_resolve import default_weights
    from medsr.infer.volume import model_slices
    from medsr.kspace import zero_fill_upsample

    model, meta = build_from_weights(weights or default_weights())
    n_adjacent = model_slices(model, meta) // 2
    params = SynthConfig(real_fraction=0.0, region=SYNTH_FOV)
    dataset = SynthSliceDataset(ensure_mni(data), params, split="test", n_adjacent=n_adjacent, patch_size=None,
                                use_labels=False, length=n_items)
    rows = []
    for s in scales:
        for i in range(n_items):
            item = dataset[SampleSpec(index=i, scale=(s, s), use_ref=True, seed=SYNTH_SEED + i)]
            lr, hr, ref = item["lr"][None], item["hr"][None], item["ref"][None]
            with torch.inference_mode():
                outputs = {"medsr sr, HR ref": model(lr, hr.shape[-2:], ref),
                           "medsr sr, no ref": model(lr, hr.shape[-2:], None),
                           "zero-filling": zero_fill_upsample(lr[:, n_adjacent : n_adjacent + 1], hr.shape[-2:])}
            truth = hr[0].permute(1, 2, 0).numpy()
            for method, pred in outputs.items():
                rows.append({"case": f"synth-test{i}", "direction": "synthetic", "scale": s, "method": method,
                             **scores(pred[0].float().permute(1, 2, 0).numpy(), truth)})
    return rows


def mean_table(rows: list[dict[str, Any]], direction: str, floor: str) -> str:
    """Markdown table of the mean PSNR / SSIM over items per scale and method, with the margin over ``floor``."""
    sub = [r for r in rows if r["direction"] == direction]
    methods = list(dict.fromkeys(r["method"] for r in sub))
    lines = [f"| scale | {' | '.join(methods)} | " + " | ".join(f"{m} - {floor} (dB)" for m in methods
                                                                 if m != floor) + " |",
             "|---|" + "---|" * (2 * len(methods) - 1)]
    for scale in dict.fromkeys(r["scale"] for r in sub):
        mean = {m: (np.mean([r["psnr"] for r in sub if r["scale"] == scale and r["method"] == m]),
                    np.mean([r["ssim"] for r in sub if r["scale"] == scale and r["method"] == m])) for m in methods}
        cells = [f"{mean[m][0]:.2f} / {mean[m][1]:.4f}" for m in methods]
        margins = [f"{mean[m][0] - mean[floor][0]:+.2f}" for m in methods if m != floor]
        lines.append(f"| x{scale:g} | {' | '.join(cells)} | {' | '.join(margins)} |")
    return "\n".join(lines)


def table(rows: list[dict[str, Any]], direction: str, floor: str) -> str:
    """Markdown table: one row per case and scale, PSNR / SSIM per method, and the margin over ``floor``."""
    methods = list(dict.fromkeys(r["method"] for r in rows if r["direction"] == direction))
    keys = list(dict.fromkeys((r["case"], r["scale"]) for r in rows if r["direction"] == direction))
    get = {(r["case"], r["scale"], r["method"]): r for r in rows if r["direction"] == direction}
    lines = [f"| case | scale | {' | '.join(methods)} | medsr sr - {floor} (dB) |",
             "|---|---|" + "---|" * (len(methods) + 1)]
    for case, scale in keys:
        cells = [f"{get[case, scale, m]['psnr']:.2f} / {get[case, scale, m]['ssim']:.4f}" for m in methods]
        margin = get[case, scale, "medsr sr"]["psnr"] - get[case, scale, floor]["psnr"]
        lines.append(f"| {case} | x{scale:g} | {' | '.join(cells)} | {margin:+.2f} |")
    for scale in dict.fromkeys(s for _, s in keys):
        mean = {m: np.mean([get[c, scale, m]["psnr"] for c, s in keys if s == scale]) for m in methods}
        cells = [f"{mean[m]:.2f}" for m in methods]
        lines.append(f"| **mean** | x{scale:g} | {' | '.join(cells)} | {mean['medsr sr'] - mean[floor]:+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    from medsr.data.heldout import cases, locate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="weights file (default: the shipped weights)")
    parser.add_argument("--scales", default="1.5,2,2.5,3,4")
    parser.add_argument("--through", default="2,3", help="slice thickness factors for the through-plane rows")
    parser.add_argument("--synthetic", type=int, default=24, help="leak-reduced synthetic items with a reference")
    parser.add_argument("--data", type=Path, default=Path("data/mni"), help="embedded data (test-split labels)")
    parser.add_argument("--cases", default=None, help="comma-separated case ids (default: all available)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/transfer"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    wanted = None if args.cases is None else set(args.cases.split(","))
    chosen = [c for c in cases() if (wanted is None and c.get("modality", "MR") == "MR") or (wanted and c["id"] in wanted)]
    missing = [c["id"] for c in chosen if locate(c) is None]
    if missing:
        print(f"transfer: cases {', '.join(missing)} need their packages: pip install dipy pydicom-data",
              file=sys.stderr)
        return 2
    scales = [float(s) for s in args.scales.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in chosen:
            hr, voxel = load_case(case)
            rows += inplane_rows(case, hr, voxel, scales, args.weights, Path(tmp))
            if hr.shape[2] >= MIN_THROUGH_SLICES and args.through:
                factors = [float(f) for f in args.through.split(",")]
                rows += through_rows(case, hr, voxel, factors, args.weights, Path(tmp))
            print(f"{case['id']}: done", file=sys.stderr)
    if args.synthetic:
        rows += synthetic_rows(args.weights, scales, args.data, args.synthetic)
    has = {r["direction"] for r in rows}
    sections = ["# Transfer benchmark: medsr sr on real scans not derived from MNI",
                f"weights: {args.weights or 'shipped (src/medsr/weights)'}", f"protocol: {PROTOCOL}",
                "## In-plane (k-space crop x s), PSNR dB / SSIM", table(rows, "in-plane", "zero-filling")]
    if "through-plane" in has:
        sections += ["## Through-plane (thick slices: Gaussian profile, FWHM = spacing = s voxels), PSNR dB / SSIM",
                     table(rows, "through-plane", "cubic")]
    if "synthetic" in has:
        sections += [f"## Leak-reduced synthetic pairs with a reference ({args.synthetic} slices), mean PSNR dB / SSIM",
                     " ".join(synthetic_rows.__doc__.split()), mean_table(rows, "synthetic", "zero-filling")]
    sections.append("## Cases\n" + "\n".join(
        f"- `{c['id']}`: {c['description']} Source: {c['distribution']} `{c['path']}`, {c['licence']}, "
        f"sha256 {c['sha256'][:16]}..." for c in chosen))
    report = "\n\n".join(sections)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"protocol": PROTOCOL, "weights": args.weights,
                                                       "rows": rows}, indent=1) + "\n")
    (args.out / "results.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
