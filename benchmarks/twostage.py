"""Two-stage segmentation-guided perceptual fine-tuning of SAKG (issue 11, item 6), paired against plain L1.

The recipe of Zhu et al. 2023: first train the SR network with a pixel loss, then fine-tune it with a
segmentation-guided perceptual term (L1 between the features of a frozen tissue segmenter on SR and HR;
``medsr.losses.segperceptual``). Here the first stage is the component study's ``sakg2`` runs
(``benchmarks/fair.py --components``, one per seed); the segmenter is trained alone on HR train-split images
(``fair.train_segmenter(kind="hr")``); each seed is then fine-tuned twice from the same weights with the same
batches: ``+ft-l1`` (L1 only) and ``+ft-segperc`` (L1 + ``--weight`` x seg_perceptual), at a quarter of the
first stage's learning rate. Both are scored with the fair benchmark's protocol (whole-field and brain-masked
PSNR/SSIM, test and generated sets) and by semantic fidelity: the frozen segmenter's pixel accuracy on the SR
output against the test labels (no reference, x4). Paired differences over seeds, with the fair verdict rule.

    python benchmarks/twostage.py [--source benchmarks/results/quality/components.json] [--steps 100]
                                  [--weight 1.0] [--seg-steps 300] [--workers 2] [--work runs/twostage]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fair  # noqa: E402

ARMS = ("+ft-l1", "+ft-segperc")


def semantic_fidelity(job: dict[str, Any]) -> dict[str, Any]:
    """Pixel accuracy of the frozen HR segmenter on the SR test volumes (no reference, x4) against the labels."""
    import torch

    from medsr.checkpoint import build_from_weights
    from medsr.evaluation.scores import predict_volumes

    torch.set_num_threads(1)
    cfg = job["cfg"]
    model = fair.build_model("sakg2", 0, cfg)
    model.load_state_dict(torch.load(job["weights"], weights_only=True))
    segmenter, _ = build_from_weights(job["segmenter"])
    test = fair.eval_sets(cfg)["test"]
    labels: list[Any] = []
    hits = total = 0
    with torch.no_grad():
        for _, sr, _, _ in predict_volumes(model.eval(), test, fair.specs_for(test, "test", 4.0, "none", cfg),
                                           on_batch=lambda b: labels.append(b["label"])):
            truth = torch.cat(labels)
            labels.clear()
            pred = segmenter(sr[:, None]).argmax(dim=1)
            hits, total = hits + int((pred == truth).sum()), total + truth.numel()
    return {**job, "accuracy": hits / total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("benchmarks/results/quality/components.json"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--weight", type=float, default=1.0, help="weight of the seg_perceptual term")
    parser.add_argument("--seg-steps", type=int, default=300, help="steps of the HR segmenter")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality"))
    parser.add_argument("--work", type=Path, default=Path("runs/twostage"))
    args = parser.parse_args(argv)

    from medsr.io.atomic import atomic_path

    start = time.time()
    source = json.loads(args.source.read_text())
    cfg = {**source["cfg"], "curve_points": 2}
    firsts = {t["seed"]: t for t in source["train"] if t["variant"] == "sakg2" and t.get("final")}
    missing = [t["weights"] for t in firsts.values() if not Path(t["weights"]).is_file()] + [
        w for w in [cfg.get("prior_weights")] if w and not Path(w).is_file()]
    if not firsts or missing:
        raise SystemExit(f"{args.source}: {'weights missing: ' + missing[0] if missing else 'no final sakg2 runs'} "
                         "(run benchmarks/fair.py --components first, as make bench does)")
    segmenter = fair.train_segmenter({**cfg, "prior_steps": args.seg_steps}, args.work, kind="hr")
    lr = firsts[min(firsts)]["lr"] / 4
    extra = {"+ft-l1": [], "+ft-segperc": [{"type": "seg_perceptual", "weight": args.weight,
                                            "weights": segmenter["weights"]}]}
    jobs = [{"variant": "sakg2", "seed": seed, "lr": lr, "steps": args.steps, "cfg": cfg, "work": str(args.work),
             "init": first["weights"], "extra_loss": extra[arm], "tag": arm, "batch_seed": 1000 + seed}
            for seed, first in sorted(firsts.items()) for arm in ARMS]
    trains = fair.pool_map(fair.train_run, jobs, args.workers)
    evals = fair.pool_map(fair.eval_run, [{"variant": "sakg2", "seed": t["seed"], "weights": t["weights"],
                                           "cfg": cfg, "work": str(args.work), "tag": t["tag"], "probes": False}
                                          for t in trains], args.workers)
    fidelity = fair.pool_map(semantic_fidelity, [{"seed": t["seed"], "tag": t["tag"], "weights": t["weights"],
                                                  "segmenter": segmenter["weights"], "cfg": cfg} for t in trains],
                             args.workers)
    for e in evals:
        e["variant"] = "sakg2" + e.pop("tag")
        e.pop("cfg")
    wall = time.time() - start
    cells = fair.cell_names(cfg, fair.PRIMARY_REFS)
    pair = {"seg_perceptual stage vs L1 stage": ("sakg2+ft-segperc", "sakg2+ft-l1")}
    acc = [[f["accuracy"] for f in sorted(fidelity, key=lambda f: f["seed"]) if f["tag"] == arm] for arm in ARMS]
    lines = ["# Two-stage segmentation-guided perceptual fine-tuning (issue 11, item 6)", "",
             f"First stage: the sakg2 runs of `{args.source}` ({source['steps']} steps, seeds "
             f"{sorted(firsts)}); second stage: {args.steps} steps at lr {lr:g} from the same weights with the same "
             f"batches, L1 vs L1 + {args.weight:g} x seg_perceptual (frozen HR tissue segmenter: "
             f"{args.seg_steps} steps, val accuracy {segmenter['accuracy']['val|hr']:.3f}). Wall time "
             f"{wall / 60:.1f} min. Protocol as `{args.source.with_suffix('.md').name}`.", "",
             "PSNR (dB), mean ± 95% t over seeds:", ""]
    lines += fair.results_table(evals, {}, cfg, ["sakg2" + a for a in ARMS], fair.PRIMARY_REFS, "psnr", [])
    lines += ["", "Paired (PSNR dB, whole field; then brain mask). Verdict rule as the fair benchmark's:", ""]
    lines += fair.diff_table(evals, pair, cells, "psnr", True) + [""]
    lines += fair.diff_table(evals, pair, cells, "psnr_mask", True) + [""]
    lines += ["Semantic fidelity (segmenter pixel accuracy on SR, test, no reference, x4):", "",
              "| arm | accuracy |", "|---|---|"]
    lines += [f"| sakg2{arm} | {fair.fmt(*fair.t_interval(a), digits=4)} |" for arm, a in zip(ARMS, acc)]
    diff = fair.t_interval([b - a for a, b in zip(*acc)])
    lines += [f"| paired: segperc - l1 | {fair.fmt(*diff, digits=4)} |", ""]
    text = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "twostage.md") as tmp:
        tmp.write_text(text)
    with atomic_path(args.out / "twostage.json") as tmp:
        tmp.write_text(json.dumps({"segmenter": segmenter, "lr": lr, "steps": args.steps, "weight": args.weight,
                                   "train": trains, "eval": evals,
                                   "fidelity": [{k: f[k] for k in ("seed", "tag", "accuracy")} for f in fidelity]},
                                  indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
