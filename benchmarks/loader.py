"""Patches per second: the chunked slice store vs. re-reading NIfTI volumes with nibabel for every sample.

Both loaders run the same :class:`medsr.data.datasets.SRSliceDataset` pipeline (same specs from one
:class:`ScaleBatchSampler`: same items, scales, patch positions, k-space degradation, augmentation); only where
the HR slices come from differs. The NIfTI side is the common naive dataset: per sample it loads the target,
reference and label volumes of the subject (gzipped NIfTI, the MNI store's subjects written out as is) and
normalises by the 99.5th percentile again. Single process, one thread, ``num_workers=0``.

Run: ``.venv/bin/python benchmarks/loader.py [--steps 25] [--batch 16] [--patch 32] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from medsr.data.datasets import ScaleBatchSampler, SRSliceDataset
from medsr.data.embedded import prepare_mni
from medsr.data.store import SliceStore, robust_scale
from medsr.scales import Curriculum

CURRICULUM = [{"scale": {"type": "uniform", "low": 1.5, "high": 4, "asymmetric": True}, "ref": "hr"}]


class NiftiVolumes:
    """The part of :class:`SliceStore` the dataset reads, served by loading a NIfTI file on every call."""

    def __init__(self, store: SliceStore, folder: Path):
        self.store, self.folder = store, folder

    def num_slices(self, sid: str) -> int:
        return self.store.num_slices(sid)

    def norm(self, sid: str, contrast: str) -> float:
        return self.store.norm(sid, contrast)

    def has_labels(self, sid: str) -> bool:
        return self.store.has_labels(sid)

    def slices(self, sid: str, contrast: str, z: slice | int) -> np.ndarray:
        volume = np.asarray(nib.load(str(self.folder / f"{sid}_{contrast}.nii.gz")).dataobj, dtype=np.float32)
        return volume[z] if contrast == "label" else volume[z] / robust_scale(volume)


def write_nifti(store: SliceStore, folder: Path) -> int:
    """Write every subject's contrasts (in original units) and labels as gzipped NIfTI; returns bytes written."""
    for sid in store.subjects():
        for contrast in store.contrasts:
            data = store.volume(sid, contrast) * np.float32(store.norm(sid, contrast))
            nib.save(nib.Nifti1Image(data, store.affine(sid)), str(folder / f"{sid}_{contrast}.nii.gz"))
        label = nib.Nifti1Image(store.volume(sid, "label"), store.affine(sid))
        nib.save(label, str(folder / f"{sid}_label.nii.gz"))
    return sum(p.stat().st_size for p in folder.iterdir())


def patches_per_second(dataset: SRSliceDataset, sampler: ScaleBatchSampler) -> float:
    """Throughput over all batches but the first (which opens files and warms up the FFT plans)."""
    batches = iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=0))
    next(batches)
    start, count = time.perf_counter(), 0
    for batch in batches:
        count += batch["lr"].shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = prepare_mni(Path(tmp) / "mni", progress=False)
        prepare_s = time.perf_counter() - start
        folder = Path(tmp) / "nifti"
        folder.mkdir()
        nifti_bytes = write_nifti(SliceStore(root), folder)
        store_bytes = (root / "slices.h5").stat().st_size

        def dataset(nifti: bool) -> SRSliceDataset:
            ds = SRSliceDataset(root, "train", "T2", ref="PD", n_adjacent=1, patch_size=args.patch, augment=True)
            if nifti:
                ds.store = NiftiVolumes(ds.store, folder)
            return ds

        curriculum = Curriculum.from_config(CURRICULUM)
        rates: dict[str, list[float]] = {"slice store (HDF5)": [], "NIfTI re-read": []}
        for _ in range(args.rounds):
            for name, nifti in (("slice store (HDF5)", False), ("NIfTI re-read", True)):
                ds = dataset(nifti)
                sampler = ScaleBatchSampler(len(ds), args.batch, curriculum, seed=0, num_steps=args.steps)
                rates[name].append(patches_per_second(ds, sampler))

    print(f"medsr prepare mni: {prepare_s:.2f} s; slices.h5 {store_bytes / 2**20:.1f} MiB, "
          f"NIfTI files {nifti_bytes / 2**20:.1f} MiB")
    print(f"{args.rounds} rounds x {args.steps} steps x batch {args.batch}, LR patch {args.patch}, "
          "scale U(1.5, 4) asymmetric, 3 adjacent slices, HR reference, labels, 1 thread, num_workers=0")
    print("NIfTI volumes are the store's subjects (slabs of 9-14 slices); whole-head volumes of ~150 slices make "
          "each re-read proportionally slower")
    print(f"{'loader':<20} {'patches/s (median)':>19} {'per round':>24}")
    for name, values in rates.items():
        print(f"{name:<20} {np.median(values):>19.1f} {', '.join(f'{v:.1f}' for v in values):>24}")
    store, nifti = (np.median(v) for v in rates.values())
    print(f"ratio store / NIfTI: {store / nifti:.1f}x")


if __name__ == "__main__":
    main()
