"""Items per second of the domain-randomised generator (``data.dataset: synth``) beside the slice store's dataset.

Same specs for every loader (``ScaleBatchSampler`` over the curriculum below: HR reference at a fixed scale,
2k + 1 = 3 adjacent slices, labels, LR patch 24 as in ``configs/synth_demo.yaml``); the generator is timed with
store label maps only, procedural maps only, and the demo config's default mixture. One process, one thread.

Run: ``.venv/bin/python benchmarks/synth_speed.py [--items 200] [--patch 24]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from medsr.config import SynthConfig
from medsr.data.datasets import SampleSpec, SRSliceDataset
from medsr.data.embedded import prepare_mni
from medsr.data.synth import SynthMixture, SynthSliceDataset


def items_per_second(dataset: torch.utils.data.Dataset, specs: list[SampleSpec]) -> float:
    """Throughput over ``specs`` after one warm-up item (file opening, FFT plans)."""
    dataset[specs[0]]
    start = time.perf_counter()
    for spec in specs:
        dataset[spec]
    return len(specs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--patch", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = prepare_mni(Path(tmp) / "mni", progress=False)
        real = SRSliceDataset(root, "train", "T2", ref="T1", n_adjacent=1, patch_size=args.patch, augment=True,
                              use_labels=True)

        def synth(**changes: float) -> SynthSliceDataset:
            return SynthSliceDataset(root, SynthConfig(**changes), n_adjacent=1, patch_size=args.patch,
                                     length=len(real))

        start = time.perf_counter()
        default = synth()
        build_s = time.perf_counter() - start
        loaders = {"store (SRSliceDataset)": real, "synth, store labels": synth(procedural_fraction=0.0),
                   "synth, procedural": synth(procedural_fraction=1.0),
                   "synth_demo mixture": SynthMixture(real, default, default.params.real_fraction)}
        print(f"generator set-up (reads the train split's labels, distance maps): {build_s:.2f} s")
        print(f"{args.items} items per cell, LR patch {args.patch}, 3 adjacent slices, HR reference, labels, 1 thread")
        print(f"{'loader':<24}" + "".join(f"{f'x{s:g} items/s':>15}" for s in (2, 3, 4)))
        for name, dataset in loaders.items():
            rates = [items_per_second(dataset, [SampleSpec(index=i % len(real), scale=(s, s), use_ref=True, seed=i)
                                                for i in range(args.items)]) for s in (2.0, 3.0, 4.0)]
            print(f"{name:<24}" + "".join(f"{r:>15.1f}" for r in rates))


if __name__ == "__main__":
    main()
