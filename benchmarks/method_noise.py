"""Calibration of the method-noise check of ``medsr denoise`` (:mod:`medsr.infer.denoise_check`): its two
measurements for good denoisers (``--method bm3d``, ``--method nlm`` at the tuned h, the shipped weights) and for
destructive ones (Gaussian blurs of 0.7, 1.5 and 3 mm, NLM with h 10x the tuned one) on real CT slices at simulated
doses, with the RED-CNN-window PSNR against the full dose to show which ones harm. Results:
``benchmarks/results/ct/method_noise.md``.

Slices: the embedded head and abdomen (:mod:`medsr.data.embedded_ct`; the thresholds are chosen on them) and the
held-out head of ``heldout.json`` (a check, not used to choose). Low dose: :func:`medsr.ct.dose.simulate_low_dose`
at doses 0.25 and 0.1 with the embedded data's I0, electronic noise, geometry and filter, one realisation.

    python benchmarks/method_noise.py              # native 512x512 slices (about 3 min on a busy 2-core machine)
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from classical_ct import psnr, slices
from medsr.checkpoint import build_from_weights
from medsr.classical.noise import estimate_noise, tissue_mask
from medsr.classical.restore import NLM_PATCH, NLM_SEARCH, slice_denoiser
from medsr.ct.dose import simulate_low_dose
from medsr.ct.geometry import scanner_geometry
from medsr.ct.nlm import nl_means
from medsr.data import embedded_ct
from medsr.infer.denoise import default_ct_weights
from medsr.infer.denoise_check import EDGE_EXCESS_LIMIT, EDGE_QUANTILE, LOW_BAND, LOW_BAND_LIMIT, measure
from medsr.inference.denoise import denoise_slices

OUT = Path(__file__).resolve().parent / "results" / "ct" / "method_noise.md"
DOSES = (0.25, 0.1)
GOOD = ("bm3d", "nlm", "shipped")


def methods(pixel_mm: float):
    """``{name: f(ld [H, W] float64 HU, psd) -> [H, W]}``."""
    net = build_from_weights(default_ct_weights(), task="denoise")[0]

    def blur(mm: float):
        return lambda x, psd: torch.from_numpy(gaussian_filter(x.numpy(), mm / pixel_mm, mode="reflect"))

    return {
        "bm3d": lambda x, psd: slice_denoiser("bm3d", psd)[0](x),
        "nlm": lambda x, psd: slice_denoiser("nlm", psd)[0](x),
        "shipped": lambda x, psd: torch.from_numpy(np.asarray(denoise_slices(net, x.float()[None])[0])).double(),
        "nlm, 10x h": lambda x, psd: nl_means(x, 10 * math.sqrt(float(psd.mean())), NLM_PATCH, NLM_SEARCH),
        "blur 0.7 mm": blur(0.7),
        "blur 1.5 mm": blur(1.5),
        "blur 3 mm": blur(3.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    rows, seconds = [], []
    for dose in DOSES:
        for name, (fd, pixel_mm) in slices(None).items():
            geometry = scanner_geometry(embedded_ct.GEOMETRY, fd.shape, pixel_mm)
            ld = simulate_low_dose(torch.from_numpy(fd), geometry, dose, embedded_ct.I0, embedded_ct.ELECTRONIC_NOISE,
                                   embedded_ct.FILTER, torch.Generator().manual_seed(20)).double()
            psd = estimate_noise(ld, valid=tissue_mask(ld)).psd
            rows.append((dose, name, "low dose (input)", psnr(ld.numpy(), fd), None))
            for method, run in methods(pixel_mm).items():
                out = run(ld, psd)
                start = time.process_time()
                result = measure(ld[None], out[None], pixel_mm)
                seconds.append(time.process_time() - start)
                rows.append((dose, name, method, psnr(out.numpy(), fd), result))
                print(f"dose {dose} {name} {method}: {result.line()}", flush=True)
    write(Path(args.out), rows, float(np.mean(seconds)), time.time() - started)


def write(path: Path, rows: list, seconds: float, wall: float) -> None:
    lines = [
        "# Method-noise check of `medsr denoise`: calibration", "",
        f"`python benchmarks/method_noise.py` ({wall / 60:.1f} min wall, one torch thread on a shared 2-core "
        "machine).", "",
        "Protocol: real 512x512 CT slices shipped by installed packages (embedded head and abdomen: thresholds chosen "
        "on them; the held-out head: a check), low dose by medsr's projection-domain simulation (I0 "
        f"{embedded_ct.I0:g}, electronic noise {embedded_ct.ELECTRONIC_NOISE:g}, {embedded_ct.GEOMETRY} beam, "
        f"{embedded_ct.FILTER} FBP, one realisation) at doses {', '.join(map(str, DOSES))}. Columns: PSNR in the "
        "RED-CNN window against the full dose; removed = HU std of input - output in the water-equivalent region; "
        "noise = the input's estimated noise (flat patches); edge excess = residual local energy at the "
        f"{EDGE_QUANTILE:.0%} strongest soft-tissue edges minus that at the weaker half, in noise variances (fails "
        f"above {EDGE_EXCESS_LIMIT:g}); low band = residual / noise power below "
        f"{LOW_BAND:g} cycles/pixel (fails above {LOW_BAND_LIMIT:g}). Good denoisers: {', '.join(GOOD)}. "
        f"The check took {seconds:.2f} s CPU per 512x512 slice (mean).", "",
        "| dose | slice | method | PSNR dB | removed / noise HU | edge excess | low band | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for dose, name, method, score, r in rows:
        if r is None:
            lines.append(f"| {dose} | {name} | {method} | {score:.2f} | | | | |")
        else:
            verdict = "fails" if r.fails else "passes"
            lines.append(f"| {dose} | {name} | {method} | {score:.2f} | {r.removed:.1f} / {r.noise:.1f} | "
                         f"{r.edge_excess:+.2f} | {r.low_band:.2f} | {verdict} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
