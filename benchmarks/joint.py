"""Joint reconstruction + super-resolution from undersampled LR k-space at T2Net's sampling (issue 12).

Settings: HR slices centre-cropped/zero-padded to 256 x 256, k-space cropped to the LR grid (x2: 128, x4: 64),
then T2Net's column statistics on that grid (``data.mask.type t2net``: 20 + 18 of 128 columns, R 3.37; 15 + 13 of
64, R 2.29), one mask per volume (per generated item for synthetic training data); orthonormal FFTs (one
intensity scale). Data: the embedded MNI store (train split -> test split), and the leak-reduced generated items of
``medsr.data.synth`` (trained on items drawn from train-split label maps, tested on items drawn from the test split's
label maps, ``real_fraction`` 0, so no test image and no template intensity is seen in training).

Methods (CPU-sized, every one trained here with the same steps, batch, optimiser and T2Net's loss 0.8 L1(SR) +
0.2 L1(reconstruction); the reconstruction of zero-filling is its input):
  zero-filling   the zero-filled LR, then k-space zero-filling to the HR grid (no parameters)
  seq-edsr       dc_cascade (hard DC) -> EDSR, stages detached (``sequential``)
  seq-sakg       dc_cascade (hard DC) -> SAKG, stages detached (``sequential``)
  t2net          the T2Net-style two-branch network, windowed task-transformer search (8 x 8 LR tiles)
  sakg-joint     dc_cascade (hard DC) -> SAKG, trained end to end (``sakg_joint``)
Metrics: fastMRI per volume (``medsr.evaluation.undersampled``: PSNR and SSIM with data range = max of the target volume,
7 x 7 uniform SSIM, NMSE) for both branches; per seed the mean over test volumes, then mean and 95% t-interval over
seeds (>= 3). Params; MACs of one slice (``torch.utils.flop_counter``: convolutions and matrix products, FFTs not
counted); CPU time per training step and per test slice (1 thread).

    python benchmarks/joint.py [--steps 30] [--seeds 0,1,2] [--jobs 2] [--datasets mni,synth] [--scales 2,4]
                               [--quick] [--out benchmarks/results/joint]
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import torch

FOV = (256, 256)
SCALES = (2, 4)
DATASETS = ("mni", "synth")
LOSS = [{"type": "l1", "weight": 0.8}, {"type": "recon_l1", "weight": 0.2}]
RECON = {"type": "dc_cascade", "n_cascades": 2, "n_feats": 16, "n_layers": 3, "dc": "hard"}
SAKG = {"encoder": {"type": "edsr", "n_feats": 16, "n_blocks": 2}, "ref_encoder": {"type": "edsr", "n_feats": 8,
        "n_blocks": 1}, "sem_width": 8, "n_fuse": 1, "hidden": 32, "semantic": False, "slice_attention": False}


def spec(method: str, scale: int) -> dict[str, Any]:
    """The MODELS spec of a benchmark method at ``scale``."""
    return {
        "zero-filling": {"type": "sequential", "sr": {"type": "zerofill"}},
        "seq-edsr": {"type": "sequential", "recon": RECON,
                     "sr": {"type": "edsr", "scales": [scale], "n_feats": 16, "n_blocks": 2}},
        "seq-sakg": {"type": "sequential", "recon": RECON, "sr": {"type": "sakg", **SAKG}},
        "t2net": {"type": "t2net", "scale": scale, "n_feats": 16, "n_groups": 2, "n_blocks": 1, "window": 8},
        "sakg-joint": {"type": "sakg_joint", "recon": RECON, "sakg": SAKG},
    }[method]


METHODS = ("zero-filling", "seq-edsr", "seq-sakg", "t2net", "sakg-joint")


def datasets(kind: str, data: Path) -> tuple[Any, Any]:
    """(train, test) datasets of ``kind`` with T2Net's mask on the LR grid."""
    from medsr.config import SynthConfig
    from medsr.data.undersampled import JointSliceDataset
    from medsr.data.masks import MaskSpec
    from medsr.data.synth import SynthSliceDataset

    mask = MaskSpec("t2net")
    if kind == "mni":
        return (JointSliceDataset(data, "train", "T2", patch_size=None, augment=True, use_labels=False, mask=mask,
                                  fov=FOV),
                JointSliceDataset(data, "test", "T2", use_labels=False, mask=mask, fov=FOV))
    params = SynthConfig(real_fraction=0.0, region=FOV[0])
    train = SynthSliceDataset(data, params, split="train", patch_size=None, use_labels=False, mask=mask)
    test = SynthSliceDataset(data, params, split="test", patch_size=None, use_labels=False, mask=mask)
    return train, test


def macs(model: torch.nn.Module, scale: int) -> float:
    """MACs of one slice (module docstring)."""
    from torch.utils.flop_counter import FlopCounterMode

    h = FOV[0] // scale
    mask = torch.zeros(1, h, dtype=torch.bool)
    mask[:, h // 2] = True
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.rand(1, 1, h, h), FOV, None, mask=mask)
    return counter.get_total_flops() / 2


def train_model(model: torch.nn.Module, dataset: Any, scale: int, seed: int, steps: int, batch: int) -> float:
    """Adam (lr 1e-3, cosine) for ``steps`` batches drawn as the engine draws them; seconds per step."""
    from medsr.data.datasets import ScaleBatchSampler
    from medsr.scales import Curriculum
    from medsr.evaluation.scores import collate
    from medsr.losses import WeightedSum
    from medsr.optim import make_optimizer, update

    criterion = WeightedSum(LOSS)
    curriculum = Curriculum.from_config([{"until_step": None, "scale": {"type": "choice", "values": [scale]},
                                          "ref": "none"}])
    sampler = ScaleBatchSampler(len(dataset), batch, curriculum, seed)
    opt = make_optimizer(model.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    model.train()
    start = time.process_time()
    for step in range(steps):
        b = collate([dataset[s] for s in sampler.batch_at(step)])
        out = model(b["lr"], tuple(b["hr"].shape[-2:]), None, mask=b["mask"], kspace=b["kspace"])
        loss, _ = criterion(out, b["hr"], b)
        update(opt, sched, loss)
    return (time.process_time() - start) / max(steps, 1)


def job(args: tuple[str, int, int, int, int, Path, int | None]) -> list[dict[str, Any]]:
    """Train and test every method on one (dataset, scale, seed); one row per method and branch."""
    kind, scale, seed, steps, batch, data, max_volumes = args
    torch.set_num_threads(1)
    from medsr.evaluation.undersampled import evaluate_joint
    from medsr.registry import MODELS

    train_set, test_set = datasets(kind, data)
    subjects = sorted({test_set.items[i][0] for i in range(len(test_set))})[:max_volumes]
    rows = []
    for method in METHODS:
        torch.manual_seed(seed)
        model = MODELS.build(spec(method, scale))
        params = sum(p.numel() for p in model.parameters())
        step_s = train_model(model, train_set, scale, seed, steps, batch) if params else 0.0
        start = time.process_time()
        scores = evaluate_joint(model, test_set, scale, batch_size=2, subjects=subjects)
        n_slices = sum(1 for i in range(len(test_set)) if test_set.items[i][0] in subjects)
        test_s = (time.process_time() - start) / n_slices
        for s in scores:
            rows.append({"data": kind, "scale": scale, "seed": seed, "method": method, "branch": s.branch,
                         "volume": str(s.subject), "psnr": s.psnr, "ssim": s.ssim, "nmse": s.nmse,
                         "params": params, "macs": macs(model, scale), "train_s_per_step": step_s,
                         "test_s_per_slice": test_s})
        print(f"{kind} x{scale} seed {seed} {method}: done", flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (data, scale, branch, method): per-seed means over volumes, then mean and 95% t-interval over seeds."""
    from medsr.evaluation.report import summarise

    out = []
    keys = sorted({(r["data"], r["scale"], r["branch"], r["method"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2], METHODS.index(k[3])))
    for key in keys:
        mine = [r for r in rows if (r["data"], r["scale"], r["branch"], r["method"]) == key]
        seeds = sorted({r["seed"] for r in mine})
        entry = {"data": key[0], "scale": key[1], "branch": key[2], "method": key[3], "seeds": len(seeds),
                 "volumes": len({r["volume"] for r in mine})}
        for metric in ("psnr", "ssim", "nmse"):
            per_seed = [sum(r[metric] for r in mine if r["seed"] == s) / sum(1 for r in mine if r["seed"] == s)
                        for s in seeds]
            entry[metric] = summarise(per_seed)._asdict()
        for cost in ("params", "macs", "train_s_per_step", "test_s_per_slice"):
            entry[cost] = sum(r[cost] for r in mine) / len(mine)
        out.append(entry)
    return out


def markdown(entries: list[dict[str, Any]], header: dict[str, Any]) -> str:
    def ci(e: dict[str, Any], metric: str, digits: int) -> str:
        s = e[metric]
        if s["ci95_low"] != s["ci95_low"]:  # NaN: one seed
            return f"{s['mean']:.{digits}f}"
        return f"{s['mean']:.{digits}f} [{s['ci95_low']:.{digits}f}, {s['ci95_high']:.{digits}f}]"

    lines = ["# Joint reconstruction + SR at T2Net's sampling", "", *[f"- {k}: {v}" for k, v in header.items()], "",
             "| data | scale | branch | method | PSNR dB [95% CI] | SSIM [95% CI] | NMSE | params | GMACs | "
             "train s/step | test s/slice |", "|" + "---|" * 11]
    for e in entries:
        lines.append(f"| {e['data']} | x{e['scale']} | {e['branch']} | {e['method']} | {ci(e, 'psnr', 2)} | "
                     f"{ci(e, 'ssim', 4)} | {e['nmse']['mean']:.4f} | {int(e['params'])} | {e['macs'] / 1e9:.2f} | "
                     f"{e['train_s_per_step']:.2f} | {e['test_s_per_slice']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/mni"), help="embedded MNI store (prepared if absent)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per model")
    parser.add_argument("--batch", type=int, default=2, help="slices per training step")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (>= 3 for intervals)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (one thread each)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="mni and/or synth")
    parser.add_argument("--scales", default=",".join(map(str, SCALES)), help="2 and/or 4")
    parser.add_argument("--max-volumes", type=int, default=None, help="test volumes per dataset (default all)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 steps, 1 seed, 1 test volume")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/joint"))
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.max_volumes = 2, "0", 1
    from medsr.data.embedded import ensure_mni
    from medsr.io.atomic import atomic_path

    ensure_mni(args.data)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = [(kind, scale, seed, args.steps, args.batch, args.data, args.max_volumes)
            for kind, scale, seed in itertools.product(args.datasets.split(","), map(int, args.scales.split(",")),
                                                       seeds)]
    start = time.time()
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        rows = [r for part in pool.imap_unordered(job, work) for r in part]
    entries = summary(rows)
    header = {"fov": f"{FOV[0]}x{FOV[1]}", "mask": "t2net on the LR grid (x2 38/128 R 3.37, x4 28/64 R 2.29)",
              "steps": args.steps, "batch": args.batch, "seeds": seeds, "loss": "0.8 L1(SR) + 0.2 L1(recon)",
              "quick": args.quick, "wall_minutes": round((time.time() - start) / 60, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "quick" if args.quick else "results"
    with atomic_path(args.out / f"{name}.json") as tmp:
        Path(tmp).write_text(json.dumps({"protocol": header, "summary": entries, "rows": rows}, indent=1))
    text = markdown(entries, header)
    with atomic_path(args.out / f"{name}.md") as tmp:
        Path(tmp).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
