"""Effective acceleration on the LR grid of the masks of ``medsr degrade``, per grid (lr: crop then mask; hr: mask
then crop), over many seeds: mean sampled columns of the LR grid and the R they give (LR columns / sampled).

    python benchmarks/masks.py [--seeds 200]
"""

from __future__ import annotations

import argparse

import numpy as np

from medsr import kspace
from medsr.data.masks import MaskSpec, on_lr_grid

SETTINGS = [  # (label, HR width, scale, mask)
    ("x2 random R4 c0.08", 256, 2.0, ("random", 4.0, 0.08)),
    ("x2 equispaced R4 c0.08", 256, 2.0, ("equispaced", 4.0, 0.08)),
    ("x2 t2net", 256, 2.0, ("t2net", None, 0.08)),
    ("x4 t2net", 256, 4.0, ("t2net", None, 0.08)),
    ("fastMRI 320 x2 random R4 c0.08", 320, 2.0, ("random", 4.0, 0.08)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    print(f"{'setting':32s} {'grid':4s} {'LR cols':>7s} {'sampled (mean)':>14s} {'R on LR grid':>12s}")
    for label, width, scale, (kind, accel, cf) in SETTINGS:
        lr = kspace.lr_shape((1, width), scale)
        for grid in ("lr", "hr"):
            if kind == "t2net" and grid == "hr":
                continue  # T2Net's presets are LR-grid masks
            spec = MaskSpec(kind, accel, cf, grid)
            counts = [on_lr_grid(spec.draw((1, width), lr, seed), grid, lr).sum() for seed in range(args.seeds)]
            mean = float(np.mean(counts))
            print(f"{label:32s} {grid:4s} {lr[1]:7d} {mean:14.1f} {lr[1] / mean:12.2f}")


if __name__ == "__main__":
    main()
