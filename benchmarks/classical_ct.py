"""Classical CT denoisers on real CT slices at a simulated quarter dose: the low-dose input, non-local means on the
first benchmarks' grid and on the grid with patch 7 / search 21 (each tuned on the validation slice), ``medsr
denoise --method nlm`` (patch 7, search 21, h proportional to the estimated noise, the factor tuned on the
validation slice), and the BM3D-style filter (``--method bm3d``) with the simulator's noise PSD and with the PSD
estimated from the slice; PSNR and SSIM in the RED-CNN window, CPU seconds per slice on one thread, and the noise
estimate against the true simulated noise. Results: ``benchmarks/results/ct/classical.md``.

Slices (real CT that installed packages ship, no download): the embedded abdomen (validation: tunes NLM's grid and
the ``h / noise`` factor), the embedded head and the held-out head of ``heldout.json`` (tests; nothing here trains,
so the head's "train" role in the embedded store does not matter). Low dose: :func:`medsr.data.embedded_ct.simulate`
(the embedded data's dose 0.25, I0, electronic noise, geometry and filter, printed in the results), realisation 0 is
the input and realisation 1 gives the simulator's PSD (:func:`medsr.classical.noise.psd_of_noise` of realisation 1
minus the full dose, soft tissue).

    python benchmarks/classical_ct.py              # native 512x512 slices (about 6 min on a busy 2-core machine)
    python benchmarks/classical_ct.py --size 128   # smoke run
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from medsr.classical.noise import estimate_noise, psd_of_noise, tissue_mask
from medsr.classical.restore import NLM_H_PER_SIGMA, NLM_PATCH, NLM_SEARCH, slice_denoiser
from medsr.ct.nlm import nl_means, nlm_grid
from medsr.data import embedded_ct
from medsr.data.heldout import cases, verified_path
from medsr.metrics.ct import scores_in_windows

OUT = Path(__file__).resolve().parent / "results" / "ct" / "classical.md"
FACTORS = (0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
HELDOUT = "ct-head-j2k"


def slices(size: int | None) -> dict[str, np.ndarray]:
    """Full-dose HU ``[H, W]`` and pixel size of each case: ``{name: (fd, pixel_mm)}``, validation first."""
    paths = {sid: embedded_ct.source_path(package, dist, rel, sha)
             for sid, package, dist, rel, _, sha in embedded_ct.SOURCES if sid in ("abdomen", "head")}
    paths["heldout head"] = verified_path(next(c for c in cases() if c["id"] == HELDOUT))
    return {name: embedded_ct.resize(*embedded_ct.read_ct_slice(path), size) for name, path in paths.items()}


def psnr(x: np.ndarray, fd: np.ndarray) -> float:
    return scores_in_windows(x, fd, ("redcnn",))["psnr_redcnn"]


def timed(fn, x: np.ndarray) -> tuple[np.ndarray, float]:
    """``fn`` on ``x`` as float64 HU, and its CPU seconds."""
    start = time.process_time()
    out = fn(torch.from_numpy(x).double()).double().numpy()
    return out, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=None, help="resample slices to SIZE x SIZE (default: native)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    data = {}
    for name, (fd, pixel_mm) in slices(args.size).items():
        ld = embedded_ct.simulate(fd, pixel_mm, 2, f"benchmark/classical/{name}")
        fd_t = torch.from_numpy(fd).double()
        data[name] = {"fd": fd, "ld": ld[0], "psd": psd_of_noise(torch.from_numpy(ld[1]) - fd_t,
                                                                   valid=tissue_mask(fd_t)),
                      "true": float(torch.from_numpy(ld[0] - fd)[tissue_mask(fd_t)].std()),
                      "estimate": estimate_noise(torch.from_numpy(ld[0]), valid=tissue_mask(torch.from_numpy(ld[0]))),
                      "own": estimate_noise(fd_t, valid=tissue_mask(fd_t)).std, "pixel_mm": pixel_mm}
        print(f"{name}: {fd.shape[0]}x{fd.shape[1]} at {pixel_mm:.3g} mm simulated", flush=True)
    val = data["abdomen"]
    grid = nlm_grid()
    tuning = {i: psnr(nl_means(torch.from_numpy(val["ld"]).double(), **p).numpy(), val["fd"])
              for i, p in enumerate(grid)}
    old = grid[max((i for i, p in enumerate(grid) if p["search"] == 11), key=tuning.get)]
    tuned = grid[max(tuning, key=tuning.get)]
    sigma_val = val["estimate"].std
    sweep = {f: psnr(nl_means(torch.from_numpy(val["ld"]).double(), f * sigma_val, NLM_PATCH, NLM_SEARCH).numpy(),
                     val["fd"]) for f in FACTORS}
    best = max(sweep, key=sweep.get)
    print(f"NLM tuned on val: old grid {old}, full grid {tuned}; h/noise sweep {sweep}", flush=True)

    methods = {
        "low dose": lambda d: lambda x: x,
        f"NLM, first grid (tuned on val: h {old['h']:g}, patch {old['patch']}, search {old['search']})":
            lambda d: lambda x: nl_means(x, old["h"], old["patch"], old["search"]),
        f"NLM, grid with patch 7 / search 21 (tuned on val: h {tuned['h']:g}, patch {tuned['patch']}, "
        f"search {tuned['search']})": lambda d: lambda x: nl_means(x, tuned["h"], tuned["patch"], tuned["search"]),
        f"NLM patch 7 / search 21, h = {best:g} x estimated noise (factor tuned on val)":
            lambda d: lambda x: nl_means(x, best * d["estimate"].std, NLM_PATCH, NLM_SEARCH),
        "BM3D-style, simulator's PSD": lambda d: slice_denoiser("bm3d", d["psd"])[0],
        "medsr denoise --method bm3d (BM3D-style, estimated PSD)":
            lambda d: slice_denoiser("bm3d", d["estimate"].psd)[0],
    }
    rows = {}
    for method, make in methods.items():
        rows[method] = {}
        for name, d in data.items():
            out, seconds = timed(make(d), d["ld"])
            scores = scores_in_windows(out, d["fd"], ("redcnn",))
            rows[method][name] = (scores["psnr_redcnn"], scores["ssim_redcnn"], seconds)
        print(method, {n: f"{v[0]:.2f}" for n, v in rows[method].items()}, flush=True)
    write(Path(args.out), data, rows, sweep, args.size, time.time() - started)


def write(path: Path, data: dict, rows: dict, sweep: dict, size: int | None, wall: float) -> None:
    names = list(data)
    lines = [
        "# Classical CT denoisers at a simulated quarter dose",
        "",
        "`python benchmarks/classical_ct.py" + (f" --size {size}" if size else "") + f"` ({wall / 60:.1f} min wall, "
        "one torch thread on a shared 2-core machine).",
        "",
        "Protocol: real CT slices shipped by installed packages (embedded abdomen = validation, tunes NLM; embedded "
        f"head and the held-out head `{HELDOUT}` = tests); low dose by medsr's projection-domain simulation "
        f"(dose {embedded_ct.DOSE}, I0 {embedded_ct.I0:g}, electronic noise {embedded_ct.ELECTRONIC_NOISE:g}, "
        f"{embedded_ct.GEOMETRY} beam, {embedded_ct.FILTER} FBP), one realisation as input, a second one for the "
        "simulator's PSD. Scores against the full-dose image as scanned (its own noise included): PSNR and SSIM "
        "in the RED-CNN window [-160, 240] HU (preset `redcnn` of medsr.metrics.ct, data range 1). CPU s: "
        "process time per slice, one thread, mean over the slices.",
        "",
        "| method | " + " | ".join(f"{n} PSNR / SSIM" for n in names) + " | CPU s / slice |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for method, per in rows.items():
        cells = [f"{per[n][0]:.2f} / {per[n][1]:.3f}" for n in names]
        seconds = np.mean([per[n][2] for n in names])
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {seconds:.1f} |")
    lines += [
        "",
        "Noise (soft tissue, HU std): the added noise is the true simulated noise; the full-dose image's own noise "
        "and the low-dose estimate are the flat-patch estimator's (medsr.classical.noise); the low-dose image holds "
        "both, so the estimate should be near sqrt(added^2 + own^2).",
        "",
        "| slice | pixel mm | added (true) | own noise of full dose (est.) | sqrt(sum of squares) | "
        "estimate on low dose | patches used |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, d in data.items():
        e = d["estimate"]
        lines.append(f"| {n} | {d['pixel_mm']:.3g} | {d['true']:.1f} | {d['own']:.1f} | "
                     f"{math.hypot(d['true'], d['own']):.1f} | {e.std:.1f} | {e.patches} / {e.candidates} |")
    lines += ["", "NLM patch 7 / search 21 on the validation slice, h = factor x estimated noise: "
              + ", ".join(f"{f:g}: {p:.2f} dB" for f, p in sweep.items())
              + f"; `medsr denoise --method nlm` uses NLM_H_PER_SIGMA = {NLM_H_PER_SIGMA:g} "
              "(medsr.classical.restore).", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
