"""CT denoising on real CT never trained on: ranks `medsr denoise`'s methods per slice, with intervals.

Cases: the held-out patient CRLM-CT-1004 of the development data (``DIR/crlm1004_ct.nii.gz``: TCIA
Colorectal-Liver-Metastases, CC BY 4.0, doi:10.7937/QXK2-QG03, converted to NIfTI in ``../shared/data/ct``; see its
README), a contrast abdomen CT at 0.80 mm that ``heldout.json`` keeps out of every preparer, and the held-out head
CT slice that pydicom ships (``ct-head-j2k`` of ``heldout.json``). Their quarter dose is simulated as the training
data's (:func:`medsr.data.prepare.ct_volumes.simulate_volume`, fixed seeds); the full-dose scan as scanned (its own
noise included) is the reference.

Every row runs the code ``medsr denoise`` runs: :func:`medsr.infer.denoise.learned_denoise` for weights (the
shipped ``dncnn_ct.pth`` and each ``--weights`` file), :func:`medsr.infer.denoise.classical_denoise` for ``--method
nlm`` / ``bm3d`` (noise PSD estimated from the case, one for all slices), plus a BM3D-style row with the
simulator's own noise PSD (an oracle no user has). Scores per slice in the RED-CNN window [-160, 240] HU and in
LDCT-bench's abdomen window (``medsr.metrics.ct`` presets); slices are the unit: mean and 95 % t-interval over
slices, and for each row the paired per-slice difference to BM3D-style, to NLM and (when ``--weights`` is given)
to the first ``--weights`` file, the control of a paired ablation, with its interval, and the worst slice's gain
over the low-dose input. Noise texture: each method is also run on a second low-dose realisation of
up to :data:`NPS_SLICES` slices; ``(out_1 - out_2) / sqrt(2)``, the output's noise alone (anatomy and the
full-dose scan's own noise cancel), in square ROIs of uniform soft tissue gives its NPS
(:func:`medsr.metrics.ct.noise_power_spectrum`, the repeated-scan method of ICRU Report 87 / AAPM TG-233): the noise
sd and the mean frequency ``f_avg`` (a blotchy, over-smoothed texture moves it down; the low-dose input's is the
scanner's). Writes ``OUT/results.md``, ``results.json``, ``comparison.png`` (the patient's middle slice: full-dose
crop, each method's crop and its error map) and ``nps.png`` (radial NPS of each method on the patient).

    python benchmarks/ct_dev.py ../shared/data/ct --weights runs/ct_dncnn_shared.pth
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from medsr.classical.noise import psd_of_noise, tissue_mask
from medsr.classical.restore import slice_denoiser
from medsr.data.prepare.ct_volumes import read_ct_volume, simulate_volume
from medsr.evaluation.report import format_value, summarise
from medsr.infer.denoise import SHIPPED_CT_WEIGHTS, classical_denoise, default_ct_weights, learned_denoise
from medsr.metrics.ct import CT_PRESETS, noise_power_spectrum, radial_nps, windowed_scores

PATIENT = "crlm1004_ct.nii.gz"
HEAD = "ct-head-j2k"
NLM, BM3D = "NLM (medsr denoise --method nlm)", "BM3D-style (medsr denoise --method bm3d)"
PROTOCOL = (
    "`python benchmarks/ct_dev.py {command}`. Cases never trained on: patient CRLM-CT-1004 (held out of every "
    "preparer by medsr/data/heldout.json; one patient of the collection the training patient comes from, so this is "
    "development data, not an independent test) and the held-out head CT slice of heldout.json (another source, "
    "anatomy and pixel size). Quarter dose simulated as for training (dose 0.25, physical I0 1e5, electronic noise "
    "10, parallel beam, Hann FBP; Yu/Zeng insertion of the missing noise), fixed seeds; reference = the full-dose "
    "scan as scanned (its own noise included). PSNR/SSIM per slice in each window (images clipped, data range = "
    "width, the preset's SSIM); mean [95% t-interval] over slices (slices are the unit; one training seed). "
    "Seconds per slice: wall time over the case on the threads given, one run.")
WINDOWS = ("redcnn", "ldctbench-abdomen")
OUT = Path("benchmarks/results/ct_dev")
NPS_SLICES, NPS_ROI = 8, 32


def per_slice(pred: np.ndarray, fd: np.ndarray) -> dict[str, list[float]]:
    """PSNR and SSIM per slice ``[Z, H, W]`` in each window of :data:`WINDOWS`."""
    x, y = torch.from_numpy(np.asarray(pred, np.float32))[:, None], torch.from_numpy(fd)[:, None]
    out = {}
    for name in WINDOWS:
        p, s = windowed_scores(x, y, CT_PRESETS[name])
        out[f"psnr_{name}"], out[f"ssim_{name}"] = p.tolist(), s.tolist()
    return out


def timed(run: Callable[[], np.ndarray], slices: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = run()
    return out, (time.perf_counter() - start) / slices


def interval(values: list[float]) -> list[float]:
    s = summarise(values)
    return [s.mean, s.ci95_low, s.ci95_high]


def flat_rois(fd: np.ndarray, size: int = NPS_ROI) -> list[tuple[int, int, int]]:
    """``(z, y, x)`` corners of square ROIs of uniform soft tissue in the full-dose slices ``[Z, H, W]``: on a grid
    of stride ``size``, ROI mean in [-20, 120] HU, and of those the half with the lowest full-dose sd (no edges)."""
    candidates = []
    for z in range(fd.shape[0]):
        for y in range(0, fd.shape[1] - size + 1, size):
            for x in range(0, fd.shape[2] - size + 1, size):
                roi = fd[z, y:y + size, x:x + size]
                if -20 <= roi.mean() <= 120:
                    candidates.append((float(roi.std()), (z, y, x)))
    candidates.sort()
    return [corner for _, corner in candidates[: max(1, len(candidates) // 2)]]


def texture(noise: np.ndarray, rois: list[tuple[int, int, int]], pixel_mm: float) -> dict[str, Any]:
    """Noise sd (HU), mean NPS frequency ``f_avg`` (1/mm) and the radial NPS of ``noise`` ``[Z, H, W]`` in
    ``rois``."""
    patches = np.stack([noise[z, y:y + NPS_ROI, x:x + NPS_ROI] for z, y, x in rois])
    nps, freq = noise_power_spectrum(patches, pixel_mm)
    fy, fx = np.meshgrid(freq, freq, indexing="ij")
    f_avg = float((np.hypot(fx, fy) * nps).sum() / nps.sum())
    rings, radial = radial_nps(patches, pixel_mm)
    sd = float(np.sqrt(np.mean([p.var(ddof=1) for p in patches])))
    return {"sd": sd, "f_avg": f_avg, "rois": len(rois), "radial": [rings.tolist(), radial.tolist()]}


def nps_figure(path: Path, rows: dict[str, Any], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, r in rows.items():
        f, nps = r["texture"]["radial"]
        ax.semilogy(f[1:], nps[1:], label=f"{name}: sd {r['texture']['sd']:.1f} HU, f_avg {r['texture']['f_avg']:.3f}")
    ax.set_xlabel("spatial frequency (1/mm)")
    ax.set_ylabel("NPS (HU$^2$ mm$^2$)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure(path: Path, fd: np.ndarray, outputs: dict[str, np.ndarray], z: int) -> None:
    """Slice ``z``: the full-dose centre crop, each method's crop and its absolute error map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = CT_PRESETS["redcnn"]
    lo, hi = window.low, window.high
    h, w = fd.shape[1:]
    crop = (slice(h // 4, 3 * h // 4), slice(w // 4, 3 * w // 4))
    names = list(outputs)
    fig, axes = plt.subplots(2, len(names) + 1, figsize=(3 * (len(names) + 1), 6.4))
    axes[0, 0].imshow(fd[z][crop], cmap="gray", vmin=lo, vmax=hi)
    axes[0, 0].set_title("full dose", fontsize=9)
    axes[1, 0].axis("off")
    for i, name in enumerate(names, 1):
        axes[0, i].imshow(outputs[name][z][crop], cmap="gray", vmin=lo, vmax=hi)
        axes[0, i].set_title(name, fontsize=8)
        axes[1, i].imshow(np.abs(outputs[name][z] - fd[z])[crop], cmap="magma", vmin=0, vmax=80)
        axes[1, i].set_title("|error| HU (0-80)", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"CRLM-CT-1004 slice {z}, simulated quarter dose, window [{lo:g}, {hi:g}] HU", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(report: dict[str, Any]) -> str:
    lines = ["# CT denoising on real CT never trained on (development data)", "", report["protocol"]]
    for case, block in report["cases"].items():
        lines += ["", f"## {case}", "", "| method | PSNR redcnn [95% CI] | SSIM redcnn | PSNR ldctbench-abdomen | "
                  "SSIM ldctbench-abdomen | s / slice |", "|---|---|---|---|---|---|"]
        for name, r in block["rows"].items():
            p, summary = r["summary"]["psnr_redcnn"], r["summary"]
            lines.append(f"| {name} | {p[0]:.2f} [{format_value(p[1], '.2f')}, {format_value(p[2], '.2f')}] | "
                         f"{summary['ssim_redcnn'][0]:.4f} | {summary['psnr_ldctbench-abdomen'][0]:.2f} | "
                         f"{summary['ssim_ldctbench-abdomen'][0]:.4f} | {r['seconds']:.2f} |")
        control = block.get("control")
        keys = ("bm3d", "nlm", "control") if control else ("bm3d", "nlm")
        lines += ["", "Paired per-slice PSNR differences (RED-CNN window, dB; mean [95% CI]) and the worst slice's gain "
                  "over the low-dose input:", "", "| method | vs BM3D-style (estimated PSD) | vs NLM | "
                  + (f"vs {control} (the first --weights) | " if control else "") + "worst slice vs low dose |",
                  "|---|---|---|" + ("---|" if control else "") + "---|"]
        for name, d in block["paired"].items():
            cells = [f"{d[k][0]:+.2f} [{format_value(d[k][1], '+.2f')}, {format_value(d[k][2], '+.2f')}]"
                     for k in keys]
            lines.append(f"| {name} | {' | '.join(cells)} | {d['worst']:+.2f} |")
        first = next(iter(block["rows"].values()))["texture"]
        lines += ["", f"Noise texture of the output (two realisations, {block['nps_slices']} slices, {first['rois']} "
                  f"ROIs of {NPS_ROI}x{NPS_ROI} uniform soft tissue): noise sd and mean NPS frequency, and f_avg "
                  "relative to the low-dose input's:", "", "| method | noise sd (HU) | f_avg (1/mm) | f_avg / low "
                  "dose |", "|---|---|---|---|"]
        base = block["rows"]["low dose"]["texture"]["f_avg"]
        for name, r in block["rows"].items():
            t = r["texture"]
            lines.append(f"| {name} | {t['sd']:.1f} | {t['f_avg']:.3f} | {t['f_avg'] / base:.2f} |")
    return "\n".join(lines) + "\n"


def cases(data: Path, slices: int | None) -> dict[str, tuple[Path, np.ndarray, np.ndarray, float]]:
    """``{name: (path, fd [Z, H, W], ld [2, Z, H, W], pixel mm)}``: the held-out patient and the held-out head
    slice, two low-dose realisations each (the first is the input, the second gives the oracle PSD and the noise
    texture)."""
    from medsr.data import embedded_ct
    from medsr.data.heldout import cases as heldout_cases, verified_path

    path = data / PATIENT
    fd, _, pixel_mm = read_ct_volume(path)
    if slices:
        fd = fd[:: max(1, fd.shape[0] // slices)]
    out = {f"CRLM-CT-1004, {fd.shape[0]} slices at {pixel_mm:.3g} mm":
           (path, fd, simulate_volume(fd, pixel_mm, 2, "benchmark/ct-dev/crlm1004"), pixel_mm)}
    head = verified_path(next(c for c in heldout_cases() if c["id"] == HEAD))
    hu, pixel_mm = embedded_ct.read_ct_slice(head)
    out[f"held-out head ({HEAD}), 1 slice at {pixel_mm:.3g} mm"] = (
        head, hu[None], embedded_ct.simulate(hu, pixel_mm, 2, "benchmark/ct-dev/head")[:, None], pixel_mm)
    return out


def run_case(path: Path, fd: np.ndarray, ld: np.ndarray, pixel_mm: float, weights: list[str]
             ) -> tuple[dict[str, Any], dict]:
    """Rows (scores, seconds, noise texture) and paired differences of one case, and each method's output."""
    hu, n = torch.from_numpy(ld[0]), fd.shape[0]
    fd_t = torch.from_numpy(fd).double()
    oracle = psd_of_noise(torch.from_numpy(ld[1]).double() - fd_t, valid=tissue_mask(fd_t))
    run_oracle = slice_denoiser("bm3d", oracle)[0]
    methods: dict[str, Callable[[torch.Tensor], np.ndarray]] = {
        "low dose": lambda x: x.numpy(),
        NLM: lambda x: classical_denoise(path, x, "nlm", None, False)[0],
        BM3D: lambda x: classical_denoise(path, x, "bm3d", None, False)[0],
        "BM3D-style, simulator's PSD (oracle)":
            lambda x: torch.stack([run_oracle(s) for s in x.double()]).float().numpy(),
        f"shipped {SHIPPED_CT_WEIGHTS}": lambda x: learned_denoise(x, default_ct_weights(), "cpu", 8, None, False)[0],
    }
    for w in weights:
        methods[Path(w).name] = lambda x, w=w: learned_denoise(x, w, "cpu", 8, None, False)[0]
    subset = np.arange(0, n, max(1, n // NPS_SLICES))[:NPS_SLICES]
    rois = flat_rois(fd[subset])
    rows, outputs = {}, {}
    for name, run in methods.items():
        out, seconds = timed(lambda: run(hu), n)
        outputs[name] = out
        scores = per_slice(out, fd)
        second = run(torch.from_numpy(np.ascontiguousarray(ld[1][subset])))
        rows[name] = {"seconds": seconds, "per_slice": scores, "summary": {k: interval(v) for k, v in scores.items()},
                      "texture": texture((out[subset] - second) / np.sqrt(2.0), rois, pixel_mm)}
        print(f"  {name}: PSNR {rows[name]['summary']['psnr_redcnn'][0]:.2f} dB, {seconds:.2f} s/slice, noise sd "
              f"{rows[name]['texture']['sd']:.1f} HU, f_avg {rows[name]['texture']['f_avg']:.3f}/mm", flush=True)
    psnr = {k: np.array(rows[k]["per_slice"]["psnr_redcnn"]) for k in methods}
    control = Path(weights[0]).name if weights else None
    paired = {name: {"bm3d": interval(list(psnr[name] - psnr[BM3D])), "nlm": interval(list(psnr[name] - psnr[NLM])),
                     **({"control": interval(list(psnr[name] - psnr[control]))} if control else {}),
                     "worst": float((psnr[name] - psnr["low dose"]).min())}
              for name in methods if name != "low dose"}
    return {"slices": n, "nps_slices": len(subset), "rows": rows, "paired": paired, "control": control}, outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder holding crlm1004_ct.nii.gz (../shared/data/ct)")
    parser.add_argument("--weights", action="append", default=[], help="a denoise weights file (repeatable)")
    parser.add_argument("--slices", type=int, default=None, help="every k-th slice of the patient, about N in all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = " ".join(sys.argv[1:] if argv is None else argv)
    report: dict[str, Any] = {"protocol": PROTOCOL.format(command=command), "cases": {}}
    figure_data = None
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (path, fd, ld, pixel_mm) in cases(args.data, args.slices).items():
        print(name, flush=True)
        report["cases"][name], outputs = run_case(path, fd, ld, pixel_mm, args.weights)
        if figure_data is None:
            figure_data = (fd, {k: v for k, v in outputs.items() if "oracle" not in k})
            nps_figure(args.out / "nps.png", report["cases"][name]["rows"], f"{name}:\nnoise power spectrum of "
                       "the output (simulated quarter dose)")
    (args.out / "results.json").write_text(json.dumps(report, indent=1))
    (args.out / "results.md").write_text(markdown(report))
    fd, outputs = figure_data
    figure(args.out / "comparison.png", fd, outputs, fd.shape[0] // 2)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
