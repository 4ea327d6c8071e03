"""The training-free reference-guided anchors (``guided``, ``dtv``) against zero-filling, plain TV (the same solver
without the reference's directions) and the shipped weights with and without the reference.

    python benchmarks/reference_anchors.py [--data data/mni] [--shared ../shared/data] [--scales 2,4]
        [--weights NAME=FILE ...]

Protocol: the anchors' parameters are tuned per scale on the embedded data's validation split (T2 target, T1
reference) and then fixed; results on its test split and, with ``--shared``, on a real registered same-subject pair
(development data, not a held-out test): the UCSF-BR-06 breast DCE-MRI session of Breast-MRI-NACT-Pilot (TCIA,
CC BY 3.0; Newitt & Hylton 2016, doi:10.7937/K9/TCIA.2016.QHsyhJKy), target the third dynamic phase, reference
the first (same grid, registered by acquisition), its central 40 of 60 sagittal 256x256 slices. The LR input is
the k-space crop of the target (the project's contract); the reference is at HR. Every method sees the same
inputs. PSNR per slice (data range: the slice's HR maximum), mean, and the per-slice paired difference to
zero-filling with its 95 % t-interval. Writes ``benchmarks/results/reference/results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from medsr.checkpoint import build_from_weights, shipped_weights
from medsr.data.datasets import SampleSpec, SRSliceDataset
from medsr.data.store import StoreWriter
from medsr.evaluation.report import summarise
from medsr.registry import MODELS

GRIDS = {
    "guided": [{"type": "guided", "radius": r, "eps": e} for r in (1, 2, 4) for e in (1e-3, 1e-2)],
    "dtv": [{"type": "dtv", "eta": e} for e in (0.02, 0.05, 0.2)],
}
BREAST = [f"ucsfbr06_dce_phase{p}.nii.gz" for p in (2, 0)]  # target, reference


def psnr(pred: torch.Tensor, hr: torch.Tensor) -> float:
    return float(10 * torch.log10(hr.max() ** 2 / ((pred.clamp_min(0) - hr) ** 2).mean()))


def items(dataset: SRSliceDataset, scale: float, limit: int | None) -> list[dict[str, Any]]:
    """Whole-slice items with the HR reference, evenly spread over the split (at most ``limit``)."""
    step = 1 if limit is None else max(1, len(dataset) // limit)
    return [dataset[SampleSpec(index=i, scale=(scale, scale), use_ref=True)] for i in range(0, len(dataset), step)]


def run(model: torch.nn.Module, batch: list[dict[str, Any]], use_ref: bool) -> list[float]:
    """PSNR per item of ``model`` (centre slice of its own ``n_slices`` from the item's stack)."""
    model.eval()
    scores = []
    with torch.no_grad():
        for item in batch:
            s = int(getattr(model, "n_slices", 1) or 1)
            stack = item["lr"]
            c, k = stack.shape[0] // 2, s // 2
            lr = stack[c - k : c + k + 1][None]
            out = model(lr, tuple(item["hr"].shape[-2:]), item["ref"][None] if use_ref else None)
            scores.append(psnr(out[0], item["hr"]))
    return scores


def tune(dataset: SRSliceDataset, scale: float, limit: int) -> dict[str, dict[str, Any]]:
    """The best spec per anchor on ``dataset`` (mean PSNR)."""
    batch = items(dataset, scale, limit)
    return {name: max(grid, key=lambda spec: np.mean(run(MODELS.build(spec), batch, True))) for name, grid in
            GRIDS.items()}


def methods(tuned: dict[str, dict[str, Any]], learned: dict[str, torch.nn.Module]
            ) -> list[tuple[str, torch.nn.Module, bool]]:
    """The rows: zero-filling, TV, the tuned anchors, then each learned model without and with the reference."""
    return [("zero-filling", MODELS.build({"type": "zerofill"}), False),
            ("TV (dtv solver, no reference)", MODELS.build({**tuned["dtv"], "gamma": 0.0}), True),
            (f"guided {json.dumps({k: v for k, v in tuned['guided'].items() if k != 'type'})}",
             MODELS.build(tuned["guided"]), True),
            (f"dtv {json.dumps({k: v for k, v in tuned['dtv'].items() if k != 'type'})}", MODELS.build(tuned["dtv"]),
             True),
            *[(f"{name}, {'HR reference' if use_ref else 'no reference'}", model, use_ref)
              for name, model in learned.items() for use_ref in (False, True)]]


def table(title: str, scale: float, batch: list[dict[str, Any]], rows: list[tuple[str, torch.nn.Module, bool]]
          ) -> tuple[list[str], list[dict[str, Any]]]:
    results, floor = [], None
    for name, model, use_ref in rows:
        start = time.perf_counter()
        scores = run(model, batch, use_ref)
        seconds = (time.perf_counter() - start) / len(batch)
        floor = scores if floor is None else floor
        diff = summarise(np.subtract(scores, floor))
        results.append({"data": title, "scale": scale, "method": name, "psnr": float(np.mean(scores)),
                        "diff": diff.mean, "ci": [diff.ci95_low, diff.ci95_high], "n": len(scores),
                        "s_per_slice": seconds})
    lines = [f"### {title}, x{scale:g} ({len(batch)} slices)", "",
             "| method | PSNR (dB) | vs zero-filling, paired [95 % CI] | s / slice |", "|---|---|---|---|"]
    for r in results:
        ci = "" if r["method"] == "zero-filling" else f"{r['diff']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]"
        lines.append(f"| {r['method']} | {r['psnr']:.2f} | {ci} | {r['s_per_slice']:.2f} |")
    return lines + [""], results


def breast_store(shared: Path, out: Path) -> Path:
    """The breast pair as a one-subject slice store (contrasts P2 target, P0 reference), central 40 slices."""
    volumes = [np.asarray(nib.load(str(shared / "mr" / name)).dataobj, dtype=np.float32) for name in BREAST]
    depth = volumes[0].shape[2]
    keep = slice(depth // 2 - 20, depth // 2 + 20)
    writer = StoreWriter(out, ["P2", "P0"], {})
    writer.add_subject("ucsfbr06", {c: np.moveaxis(v[..., keep], -1, 0) for c, v in zip(("P2", "P0"), volumes)})
    writer.finish("breast-pair", {"train": [], "val": [], "test": ["ucsfbr06"]}, {})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/mni"), help="the embedded store (medsr prepare mni)")
    parser.add_argument("--shared", type=Path, default=None, help="the shared data folder with mr/ucsfbr06_dce_phase*"
                        " (TCIA Breast-MRI-NACT-Pilot, see the module docstring)")
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--tune-slices", type=int, default=12)
    parser.add_argument("--test-slices", type=int, default=None, help="at most this many test slices per set")
    parser.add_argument("--weights", action="append", default=[], metavar="NAME=FILE",
                        help="more learned rows (same n_adjacent as the shipped weights)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reference"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    shipped, meta = build_from_weights(shipped_weights())
    n_adj = int(meta.get("n_adjacent") or 0)
    learned = {"shipped sakg_synth": shipped}
    for entry in args.weights:
        name, _, path = entry.partition("=")
        learned[name] = build_from_weights(path)[0]
    sets = {"embedded MNI test split (T2 from T1)": SRSliceDataset(args.data, "test", "T2", ref="T1",
                                                                     n_adjacent=n_adj)}
    command = " ".join(["python benchmarks/reference_anchors.py", *(argv if argv is not None else sys.argv[1:])])
    lines = [f"# Reference-guided anchors (`{command}`)", "", __doc__.split("\n\n")[2], ""]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.shared is not None:
            store = breast_store(args.shared, Path(tmp) / "breast")
            sets["real registered pair: breast DCE phase 3 from phase 1 (development data)"] = SRSliceDataset(
                store, "test", "P2", ref="P0", n_adjacent=n_adj)
        val = SRSliceDataset(args.data, "val", "T2", ref="T1", n_adjacent=n_adj)
        for scale in (float(s) for s in args.scales.split(",")):
            tuned = tune(val, scale, args.tune_slices)
            lines.append(f"Tuned on the validation split at x{scale:g}: {json.dumps(tuned)}")
            lines.append("")
            for title, dataset in sets.items():
                block, rows = table(title, scale, items(dataset, scale, args.test_slices), methods(tuned, learned))
                lines += block
                results += rows
    lines.append(f"Wall time {(time.perf_counter() - started) / 60:.1f} min (one thread).")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
