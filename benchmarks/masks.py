"""Effective acceleration on the LR grid of the masks of ``medsr degrade``, per grid (lr: crop then mask; hr: mask
then crop), over many seeds: mean sampled columns of the LR grid, the R they give (LR columns / sampled) and the R
of a magnitude image, whose Hermitian k-space also reveals the conjugate mirror of every sampled column
(:func:`medsr.data.masks.mirror_acceleration`).

    python benchmarks/masks.py [--seeds 200] > benchmarks/results/masks/effective_r.md
"""

from __future__ import annotations

import argparse

import numpy as np

from medsr import kspace
from medsr.data.masks import MaskSpec, mirror_acceleration, on_lr_grid

SETTINGS = [  # (label, HR width, scale, mask)
    ("x2 random R4 c0.08", 256, 2.0, ("random", 4.0, 0.08)),
    ("x2 equispaced R4 c0.08", 256, 2.0, ("equispaced", 4.0, 0.08)),
    ("x2 t2net (published file)", 256, 2.0, ("t2net", None, 0.08)),
    ("x4 t2net (published file)", 256, 4.0, ("t2net", None, 0.08)),
    ("x4 t2net-random", 256, 4.0, ("t2net-random", None, 0.08)),
    ("fastMRI 320 x2 random R4 c0.08", 320, 2.0, ("random", 4.0, 0.08)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    print(f"{'setting':32s} {'grid':4s} {'LR cols':>7s} {'sampled (mean)':>14s} {'R on LR grid':>12s} "
          f"{'R, magnitude image':>18s}")
    for label, width, scale, (kind, accel, cf) in SETTINGS:
        lr = kspace.lr_shape((1, width), scale)
        for grid in ("lr", "hr"):
            if kind.startswith("t2net") and grid == "hr":
                continue  # T2Net's masks are LR-grid masks
            spec = MaskSpec(kind, accel, cf, grid)
            drawn = [on_lr_grid(spec.draw((1, width), lr, seed), grid, lr) for seed in range(args.seeds)]
            mean = float(np.mean([m.sum() for m in drawn]))
            mirror = float(np.mean([mirror_acceleration(m) for m in drawn]))
            print(f"{label:32s} {grid:4s} {lr[1]:7d} {mean:14.1f} {lr[1] / mean:12.2f} {mirror:18.2f}")


if __name__ == "__main__":
    main()
