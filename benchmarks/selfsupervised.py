"""Self-test margin and cost, and what ``medsr sr --adapt`` gains, on one high-resolution volume you give.

In-plane: the volume is made low-resolution by ``medsr degrade --scale S`` (the k-space contract) and
super-resolved back with ``medsr sr --scale S,S,1``, with the given weights as they are and after ``--adapt``;
PSNR against the original (data range = its maximum) beside k-space zero-filling. Through-plane: the axis
``--through-axis`` of the original becomes Z (axes permuted), thick slices are simulated along it by
``medsr degrade --slice-thickness`` (thickness = S voxels, no gap, ``--profile``), and ``medsr sr --scale 1,1,S``
(with ``--slice-thickness`` = that thickness) restores it; PSNR beside cubic interpolation along Z. Every run
prints the self-test line (mean PSNR over the tested planes, the margin with its per-plane paired 95 % interval)
and its cost relative to the inference. With ``--adapt``, the self-test holds out blocks of Z slices (with a gap)
that adaptation never trains on, scores the original and the adapted weights on them and keeps the better; the
notes say which, and the rows' PSNR is that of the kept weights. The volume is only read, never trained on
outside the ``--adapt`` runs measured here.

    python benchmarks/selfsupervised.py VOLUME.nii.gz [--voxel 2,2,2] [--scale 2] [--through-axis 1]
        [--adapt-minutes 2] [--weights FILE] [--profile gaussian] [--cases in-plane,through-plane]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from medsr import kspace
from medsr.data.degrade import degrade_file, parse_degradation
from medsr.data.thick import parse_thick_slices, thick_slice_file
from medsr.infer.super_resolve import super_resolve_file
from medsr.infer.guard import parse_safeguards
from medsr.metrics.image import psnr
from medsr.models.base import bicubic_upsample


def score(pred: np.ndarray, truth: np.ndarray) -> float:
    as_5d = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))[None, None]
    return float(psnr(as_5d(pred), as_5d(truth), float(truth.max())))


def write(path: Path, data: np.ndarray, voxel: tuple[float, float, float]) -> Path:
    image = nib.Nifti1Image(np.asarray(data, dtype=np.float32), np.diag([*voxel, 1.0]))
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
    return path


def sr_rows(case: str, lr: Path, scale: str, truth: np.ndarray, thickness: float | None,
            args: argparse.Namespace) -> list:
    """``medsr sr`` as it is and with ``--adapt``: (case, method, PSNR, seconds, notes) rows."""
    rows = []
    for minutes in (None, args.adapt_minutes):
        guards = parse_safeguards(adapt=minutes is not None, adapt_minutes=minutes, slice_thickness=thickness,
                                  profile=args.profile, progress=False)
        started = time.perf_counter()
        report = super_resolve_file(lr, lr.with_name("sr.nii.gz"), scale=scale, weights=args.weights,
                                    device="cpu", progress=False, guards=guards)
        seconds = time.perf_counter() - started
        pred = np.asarray(nib.load(str(lr.with_name("sr.nii.gz"))).dataobj)
        name = "medsr sr" if minutes is None else f"medsr sr --adapt ({minutes:g} min)"
        rows.append((case, name, score(pred, truth), seconds, report.notes + report.warnings))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("volume")
    parser.add_argument("--voxel", help="voxel size X,Y,Z in mm, replacing the header's (for broken headers)")
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--through-axis", type=int, default=1, help="original axis that becomes Z")
    parser.add_argument("--adapt-minutes", type=float, default=2.0)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--profile", default="gaussian")
    parser.add_argument("--cases", default="in-plane,through-plane")
    args = parser.parse_args()
    image = nib.load(args.volume)
    data = np.asarray(image.dataobj, dtype=np.float32).squeeze()
    voxel = tuple(float(v) for v in (args.voxel.split(",") if args.voxel else image.header.get_zooms()[:3]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "in-plane" in args.cases.split(","):
            rows += inplane(tmp, data, voxel, args)
        if "through-plane" in args.cases.split(","):
            rows += through(tmp, data, voxel, args)
    print(f"{Path(args.volume).name} {data.shape} voxel {voxel} mm; PSNR against the original, data range = its "
          f"maximum; thick slices: {args.profile}, FWHM = {args.scale:g} voxels, no gap; torch threads "
          f"{torch.get_num_threads()}")
    print("| case | method | PSNR (dB) | wall time (s) |\n|---|---|---|---|")
    for case, name, value, seconds, _ in rows:
        print(f"| {case} | {name} | {value:.2f} | {seconds:.1f} |")
    for case, name, _, _, notes in rows:
        for note in notes:
            print(f"{case}, {name}: {note}")


def inplane(tmp: Path, data: np.ndarray, voxel: tuple[float, float, float], args: argparse.Namespace) -> list:
    s, rows = args.scale, []
    hr = write(tmp / "hr.nii.gz", data, voxel)
    degrade_file(hr, tmp / "lr.nii.gz", parse_degradation(scale=s))
    lr = np.asarray(nib.load(str(tmp / "lr.nii.gz")).dataobj)
    zf = np.moveaxis(kspace.zero_fill_upsample(np.moveaxis(lr, 2, 0), data.shape[:2]), 0, 2)
    rows.append((f"in-plane x{s:g}", "k-space zero-filling", score(zf, data), 0.0, []))
    return rows + sr_rows(f"in-plane x{s:g}", tmp / "lr.nii.gz", f"{s:g},{s:g},1", data, None, args)


def through(tmp: Path, data: np.ndarray, voxel: tuple[float, float, float], args: argparse.Namespace) -> list:
    s, rows = args.scale, []
    order = [a for a in range(3) if a != args.through_axis] + [args.through_axis]
    iso = np.transpose(data, order)
    iso_voxel = tuple(voxel[a] for a in order)
    hr = write(tmp / "iso.nii.gz", iso, iso_voxel)
    thickness = s * iso_voxel[2]
    thick_slice_file(hr, tmp / "thick.nii.gz", parse_thick_slices(thickness, 0, args.profile))
    thick = np.asarray(nib.load(str(tmp / "thick.nii.gz")).dataobj)
    cubic = bicubic_upsample(torch.from_numpy(thick.reshape(-1, 1, 1, thick.shape[2])),
                             (1, iso.shape[2])).reshape(iso.shape).numpy()
    rows.append((f"through-plane x{s:g}", "cubic interpolation", score(cubic, iso), 0.0, []))
    return rows + sr_rows(f"through-plane x{s:g}", tmp / "thick.nii.gz", f"1,1,{s:g}", iso, thickness, args)


if __name__ == "__main__":
    main()
