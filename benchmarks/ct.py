"""Low-dose CT denoising benchmark on the embedded CT data: low-dose input, non-local means (tuned on the
validation split), RED-CNN, DnCNN, CNCL in the paper's configuration (``ct_cncl``: two U-Nets, conditional
PatchGAN, L1 x 100 + GAN x 1) and the reduced CNCL-lite with both fusions, each trained with several seeds, scored in
the RED-CNN window and the LDCT-bench window of the case's anatomy; parameters, MACs and CPU time per 512x512 slice;
a comparison figure. Results: ``benchmarks/results/ct/`` (``results.json``, ``results.md``, ``comparison.png``).

Cases: ``val`` (the embedded store's validation slice, an abdomen, realisation 0; NLM is tuned on it,
so its NLM row is optimistic) and ``transfer`` (the held-out real head CT of ``heldout.json``, from a source
the embedded data do not use, its low dose simulated here with the embedded data's parameters and a fixed seed).
Learned methods are trained by ``medsr train <config> seed=S train.steps=N`` (configs ct_redcnn, ct_dncnn,
ct_cncl, ct_cncl_lite, ct_cncl_lite_xattn, verbatim but for seed, steps and folders), ``--jobs`` runs at a time, one
thread each; their rows are mean +- 95% t-interval half-width over seeds. The shipped default of ``medsr denoise``
gets a row when present (its results file was made with the previous default, ``cncl_ct.pth``, CNCL-lite). The paper's CNCL (62 M parameters; the others 75 k to 207 k) trains far slower on CPUs,
and at the full protocol's 400 steps at its reference learning rate (2e-5) it is undertrained: its rows measure that.

    python benchmarks/ct.py                # full: 3 seeds x 400 steps (24 min on 2 cores before ct_cncl joined; not re-timed)
    python benchmarks/ct.py --quick        # smoke: 2 seeds x 10 steps on a 128-pixel store (3-5 min before ct_cncl)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

METHODS = {"RED-CNN": "ct_redcnn", "DnCNN": "ct_dncnn", "CNCL (paper)": "ct_cncl", "CNCL-lite (conv)": "ct_cncl_lite",
           "CNCL-lite (cross-attn)": "ct_cncl_lite_xattn"}
WINDOWS = {"val": ("redcnn", "ldctbench-abdomen"), "transfer": ("redcnn", "ldctbench-neuro")}
TRANSFER_CASE = "ct-head-j2k"


def train_one(config: str, seed: int, steps: int, data: str, runs: str) -> str:
    """Train one config (in a worker process, one thread); the weights file's path."""
    torch.set_num_threads(1)
    from medsr.engine.runs import train

    overrides = [f"data.root={data}", "data.embedded=null", f"seed={seed}", f"train.steps={steps}",
                 f"val.every={steps}", f"logging.runs_dir={runs}", f"train.checkpoint_every={steps}"]
    return str(train(config, overrides, overwrite=True, name=f"{config}_s{seed}") / "weights.pth")


def transfer_case(size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(ld, fd)`` HU ``[H, W]`` of the held-out CT slice, low dose simulated as for the embedded data."""
    from medsr.data import embedded_ct
    from medsr.data.heldout import cases, verified_path

    case = next(c for c in cases() if c["id"] == TRANSFER_CASE)
    fd, pixel_mm = embedded_ct.resize(*embedded_ct.read_ct_slice(verified_path(case)), size)
    return embedded_ct.simulate(fd, pixel_mm, 1, "benchmark/transfer")[0], fd


def scores(pred: np.ndarray, fd: np.ndarray, case: str) -> dict[str, float]:
    from medsr.metrics.ct import scores_in_windows

    return scores_in_windows(pred, fd, WINDOWS[case])


def tune_nlm(ld: np.ndarray, fd: np.ndarray) -> dict[str, float]:
    """The NLM parameters of the grid with the best RED-CNN-window PSNR on the validation slice."""
    from medsr.ct.nlm import nl_means, nlm_grid

    def psnr(params: dict[str, float]) -> float:
        return scores(nl_means(torch.from_numpy(ld).double(), **params).float().numpy(), fd, "val")["psnr_redcnn"]

    return max(nlm_grid(), key=psnr)


def cost(weights: str, threads: int) -> dict[str, float]:
    """Parameters, MACs (torch's FLOP counter / 2: convolutions and matrix products) and CPU seconds of one
    512x512 slice (best of 2 after a warm-up)."""
    from torch.utils.flop_counter import FlopCounterMode

    from medsr.checkpoint import build_from_weights
    from medsr.models.base import as_image

    torch.set_num_threads(threads)
    model, _ = build_from_weights(weights)
    x = torch.rand(1, 1, 512, 512)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            as_image(model(x))
        times = []
        for _ in range(3):
            start = time.perf_counter()
            as_image(model(x))
            times.append(time.perf_counter() - start)
    return {"params": sum(p.numel() for p in model.parameters()), "gmacs": counter.get_total_flops() / 2e9,
            "cpu_s": min(times[1:])}


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (0 for one value), from the evaluation package."""
    from medsr.evaluation.report import mean_half_width

    mean, half = mean_half_width(values)
    return mean, half if math.isfinite(half) else 0.0


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# CT denoising benchmark ({report['mode']})", "", report["protocol"], ""]
    for case in WINDOWS:
        columns = [f"{m} {w}" for w in WINDOWS[case] for m in ("PSNR", "SSIM")]
        lines += [f"## {case}", "", "| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for method, row in report["cases"][case].items():
            cells = []
            for w in WINDOWS[case]:
                for m in ("psnr", "ssim"):
                    mean, half = row[f"{m}_{w}"]
                    digits = 2 if m == "psnr" else 4
                    cells.append(f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if half else ""))
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## cost per 512x512 slice", "", "| method | params | GMACs | CPU s |", "|---|---|---|---|"]
    lines += [f"| {m} | {c['params']:,} | {c['gmacs']:.2f} | {c['cpu_s']:.3f} |" for m, c in report["cost"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from medsr.checkpoint import build_from_weights
    from medsr.ct.nlm import nl_means
    from medsr.data.ct_pairs import CTPairStore
    from medsr.data.embedded_ct import ensure_ct, prepare_ct
    from medsr.infer.denoise import SHIPPED_CT_WEIGHTS
    from medsr.metrics.ct import CT_PRESETS
    from medsr.inference.denoise import denoise_slices
    from medsr.viz import ct_comparison_figure

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 10 steps, 128-pixel images")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per method (default 3; quick 2)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default 400; quick 10)")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at a time, one thread each (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="threads for evaluation and timing (default 2)")
    parser.add_argument("--data", type=Path, default=Path("data/ct"), help="embedded CT store (built if missing)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ct"))
    args = parser.parse_args(argv)
    seeds = args.seeds or (2 if args.quick else 3)
    steps = args.steps or (10 if args.quick else 400)
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="medsr-ct-bench-"))
    data = prepare_ct(work / "ct128", size=128, progress=False) if args.quick else ensure_ct(args.data)
    started = time.perf_counter()
    jobs = [(m, c, s) for m, c in METHODS.items() for s in range(seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(train_one, c, s, steps, str(data), str(work / "runs")) for _, c, s in jobs]
        trained = [(m, s, f.result()) for (m, _, s), f in zip(jobs, futures)]
    train_minutes = (time.perf_counter() - started) / 60
    store = CTPairStore(data)
    ld_val, fd_val = (v[0] for v in store.volume_pair(store.subjects("val")[0]))
    inputs = {"val": (ld_val, fd_val), "transfer": transfer_case(128 if args.quick else None)}
    nlm = tune_nlm(*inputs["val"])
    shipped = Path(__file__).resolve().parents[1] / "src" / "medsr" / "weights" / SHIPPED_CT_WEIGHTS
    per_seed: dict[str, dict[str, list[dict[str, float]]]] = {case: {} for case in inputs}
    predictions: dict[str, np.ndarray] = {}
    for case, (ld, fd) in inputs.items():
        per_seed[case]["low dose"] = [scores(ld, fd, case)]
        denoised = nl_means(torch.from_numpy(ld).double(), **nlm).float().numpy()
        per_seed[case]["NLM (tuned on val)"] = [scores(denoised, fd, case)]
        if case == "transfer":
            predictions.update({"low dose": ld, "NLM": denoised})
        models = [(m, s, w) for m, s, w in trained] + ([(f"shipped {shipped.name}", 0, str(shipped))]
                                                        if shipped.is_file() else [])
        for method, seed, weights in models:
            pred = denoise_slices(build_from_weights(weights, task="denoise")[0], ld[None])[0]
            per_seed[case].setdefault(method, []).append(scores(pred, fd, case))
            if case == "transfer" and seed == 0:
                predictions[method] = pred
    report = {
        "mode": "quick" if args.quick else "full", "seeds": seeds, "steps": steps, "nlm": nlm,
        "train_minutes": train_minutes,
        "protocol": (f"{seeds} seeds x {steps} steps per learned method (mean ± 95% t-interval half-width over "
                     "seeds); windows (medsr.metrics.ct presets): "
                     + "; ".join(f"{w}: {CT_PRESETS[w].describe()}" for w in dict.fromkeys(sum(WINDOWS.values(), ())))
                     + "; NLM parameters (h, patch, search) tuned on val "
                     f"by RED-CNN-window PSNR: {nlm}; val = embedded abdomen slice, transfer = held-out head CT "
                     f"({TRANSFER_CASE}) with simulated 25% dose; training took {train_minutes:.1f} min"),
        "cases": {case: {m: {k: interval([r[k] for r in rows]) for k in rows[0]} for m, rows in methods.items()}
                  for case, methods in per_seed.items()},
        "per_seed": per_seed,
        "cost": {m: cost(w, args.threads) for m, s, w in trained if s == 0},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(report))
    ct_comparison_figure(predictions, inputs["transfer"][1], args.out / "comparison.png", CT_PRESETS["redcnn"],
                         "held-out head CT (simulated 25% dose, seed-0 models),")
    print(markdown(report))
    print(f"wrote {args.out}/results.json, results.md, comparison.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
