"""The shipped ``sakg`` weights on every contrast pair of the embedded MNI test split, against bicubic and
zero-filling: each of T1/T2/PD as target, with each other contrast as HR reference, and with no reference.

Protocol: ``medsr.evaluation.scores`` (whole test volumes, PSNR/SSIM per volume, data range of the HR volume).

    python benchmarks/shipped.py [--weights src/medsr/weights/sakg_synth.pth] [--data data/mni] [--scales 2,4]
                                 [--out benchmarks/results/shipped]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CONTRASTS = ("T1", "T2", "PD")


def main(argv: list[str] | None = None) -> int:
    import torch

    from medsr.checkpoint import build_from_weights
    from medsr.data.datasets import SRSliceDataset
    from medsr.data.embedded import ensure_mni
    from medsr.evaluation import scores as evaluation
    from medsr.io.atomic import atomic_path
    from medsr.evaluation.report import protocol_header
    from medsr.registry import MODELS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path("src/medsr/weights/sakg_synth.pth"))
    parser.add_argument("--data", type=Path, default=Path("data/mni"))
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shipped"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = ensure_mni(args.data)
    model, meta = build_from_weights(args.weights)
    n_adjacent = int(meta.get("n_adjacent", 1))
    methods = {"sakg": model, "bicubic": MODELS.build({"type": "bicubic"}), "zerofill": MODELS.build({"type": "zerofill"})}
    scales = [float(s) for s in args.scales.split(",")]
    rows = []
    for target in CONTRASTS:
        for ref in [c for c in CONTRASTS if c != target] + [None]:
            dataset = SRSliceDataset(data, "test", target, ref=ref, n_adjacent=n_adjacent, use_labels=False)
            for scale in scales:
                for name, net in methods.items():
                    if name != "sakg" and ref is not None:
                        continue
                    mode = "hr" if name == "sakg" and ref is not None else "none"
                    scores, _ = evaluation.evaluate_scale(net, dataset, scale, mode)
                    s = evaluation.summarise(evaluation.moments(scores))
                    rows.append({"target": target, "ref": ref or "none", "method": name, "scale": scale,
                                 "psnr": s.psnr, "ssim": s.ssim, "n_volumes": s.n_volumes})
                    print(f"{target} <- {ref or 'none'} x{scale:g} {name}: {s.psnr:.2f} / {s.ssim:.4f}", flush=True)
    protocol = {**evaluation.PROTOCOL, "weights": str(args.weights), "steps": meta.get("steps"),
                "trained_pairs": ", ".join(meta.get("contrasts", {}).get("pairs") or []), "split": "test"}
    head = "| target | reference | method | " + " | ".join(f"x{s:g} PSNR / SSIM" for s in scales) + " |"
    lines = ["# Shipped sakg weights on every contrast pair", "", "```", protocol_header(protocol), "```", "",
             head, "|---|---|---|" + "---|" * len(scales)]
    keys = dict.fromkeys((r["target"], r["ref"], r["method"]) for r in rows)
    for target, ref, method in keys:
        cells = [f"{r['psnr']:.2f} / {r['ssim']:.4f}" for r in rows
                 if (r["target"], r["ref"], r["method"]) == (target, ref, method)]
        lines.append(f"| {target} | {ref if method == 'sakg' else '-'} | {method} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "results.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    with atomic_path(args.out / "results.json") as tmp:
        tmp.write_text(json.dumps({"protocol": protocol, "rows": rows}, indent=2) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
