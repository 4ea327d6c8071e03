"""Paired low-dose / full-dose CT slices in HU: the store of ``task: denoise``, and its dataset.

Layout of a CT pair store ``OUT/``: ``pairs.h5`` with ``/subjects/<sid>/fd`` float32 ``[Z, H, W]`` (full dose,
HU) and ``/subjects/<sid>/ld`` float32 ``[R, Z, H, W]`` (``R`` low-dose realisations of the same slices, HU: one
for real scans, several when the low dose is simulated), attributes ``affine`` (store indices ``(z, h, w)`` to
world mm) and ``pixel_mm``; ``manifest.json`` (``kind: ct_pairs``, units, how the low dose was obtained, per
subject shape, realisations and sources) and ``split.json`` (subjects, never slices, per split). HU are stored
as they are: the fixed network normalisation (:func:`medsr.ct.units.hu_to_unit`) is applied to items, never a
statistic of the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import h5py
import nibabel as nib
import numpy as np
import torch

import medsr
from medsr.ct.units import network_input
from medsr.data.datasets import ItemSpec, VolumeIndex, augment_arrays
from medsr.data.store import MANIFEST_FILE, SPLIT_FILE, SPLITS, StoreReader, write_json
from medsr.errors import InputError
from medsr.io.atomic import atomic_dir

PAIRS_FILE = "pairs.h5"
KIND = "ct_pairs"
NIFTI_DIR = "nifti"
BODY_HU = -900.0  # a training patch should hold some tissue: its mean full-dose HU above this
PATCH_TRIES = 8


def nifti_affine(store_affine: np.ndarray) -> np.ndarray:
    """The NIfTI affine of a volume ``[H, W, Z]`` (slices on the last axis, as ``medsr denoise`` reads them) from
    the store's ``(z, h, w)`` affine."""
    affine = np.array(store_affine, np.float64)
    affine[:, :3] = affine[:, [1, 2, 0]]
    return affine


def write_pair_store(out_dir: str | Path, subjects: Mapping[str, Mapping[str, Any]], split: Mapping[str, list[str]],
                     parameters: Mapping[str, Any]) -> None:
    """Write a store atomically (the folder appears complete or not at all). ``subjects[sid]`` holds ``fd``
    ``[Z, H, W]``, ``ld`` ``[R, Z, H, W]`` (HU), ``affine``, ``pixel_mm`` and a JSON-able ``record``. Beside the
    HDF5 file, ``nifti/<sid>_fd.nii.gz`` and ``nifti/<sid>_ld.nii.gz`` (the first low-dose realisation) hold each
    subject as HU volumes ``[H, W, Z]`` for the command-line tools."""
    records = {}
    with atomic_dir(out_dir) as tmp:
        (tmp / NIFTI_DIR).mkdir()
        for sid, s in subjects.items():
            affine = nifti_affine(s["affine"])
            for name, volume in (("fd", s["fd"]), ("ld", np.asarray(s["ld"])[0])):
                data = np.moveaxis(np.asarray(volume, np.float32), 0, 2)
                image = nib.Nifti1Image(data, affine)
                image.header.set_xyzt_units("mm")
                nib.save(image, tmp / NIFTI_DIR / f"{sid}_{name}.nii.gz")
        with h5py.File(tmp / PAIRS_FILE, "w") as f:
            for sid, s in subjects.items():
                fd, ld = np.asarray(s["fd"], np.float32), np.asarray(s["ld"], np.float32)
                if ld.ndim != 4 or ld.shape[1:] != fd.shape:
                    raise ValueError(f"subject {sid}: ld {ld.shape} is not [R, *{fd.shape}]")
                group = f.create_group(f"subjects/{sid}")
                group.create_dataset("fd", data=fd, chunks=(1,) + fd.shape[1:], compression="lzf")
                group.create_dataset("ld", data=ld, chunks=(1, 1) + fd.shape[1:], compression="lzf")
                group.attrs["affine"] = np.asarray(s["affine"], np.float64)
                group.attrs["pixel_mm"] = float(s["pixel_mm"])
                records[sid] = {"shape": list(fd.shape), "realisations": ld.shape[0],
                                "pixel_mm": float(s["pixel_mm"]), **s.get("record", {})}
        manifest = {"kind": KIND, "units": "HU", "medsr_version": medsr.__version__,
                    "parameters": dict(parameters), "subjects": records}
        write_json(tmp / MANIFEST_FILE, manifest)
        write_json(tmp / SPLIT_FILE, {name: list(split.get(name, [])) for name in SPLITS})


def is_pair_store(root: str | Path) -> bool:
    return (Path(root) / PAIRS_FILE).is_file()


class CTPairStore(StoreReader):
    """Read access to a CT pair store (``pairs.h5``)."""

    data_file = PAIRS_FILE
    prepare_hint = "not a prepared CT pair store (run 'medsr prepare ct' or 'medsr prepare ldct')"

    def __init__(self, root: str | Path):
        super().__init__(root)
        if self.manifest.get("kind") != KIND:
            raise InputError(self.root / MANIFEST_FILE, f"not a CT pair store (kind {self.manifest.get('kind')!r})")

    def record(self, sid: str) -> dict[str, Any]:
        return self.manifest["subjects"][sid]

    def shape(self, sid: str) -> tuple[int, ...]:
        """``(Z, H, W)`` of a subject's full-dose volume."""
        return tuple(self.record(sid)["shape"])

    def slice_pair(self, sid: str, z: int, realisation: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ld, fd)`` ``[H, W]`` HU of slice ``z``."""
        group = self.file[f"subjects/{sid}"]
        return np.asarray(group["ld"][realisation, z]), np.asarray(group["fd"][z])

    def volume_pair(self, sid: str, realisation: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(ld, fd)`` ``[Z, H, W]`` HU of a whole subject."""
        group = self.file[f"subjects/{sid}"]
        return np.asarray(group["ld"][realisation]), np.asarray(group["fd"])


def to_unit(hu: np.ndarray) -> torch.Tensor:
    """HU ``[H, W]`` as the network's input ``[1, H, W]`` (:func:`medsr.ct.units.network_input`)."""
    return network_input(torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32)))[None]


class CTPairDataset(VolumeIndex, torch.utils.data.Dataset):
    """All ``(subject, z)`` of one split. Training items (``ItemSpec``): a realisation, a square ``patch_size``
    patch holding tissue (mean full dose above -900 HU when one of a few seeded draws finds it) and, with
    ``augment``, one flip/rot90, and with ``noise_scale = (low, high)`` the noise ``ld - fd`` multiplied by a
    factor ``a`` drawn uniformly from it (the simulated pairs insert ``(1/d - 1)`` times the full dose's noise
    variance, so to first order the scaled pair is a scan at dose ``1 / (1 + a^2 (1/d - 1))`` of the full dose;
    for measured pairs ``ld - fd`` also holds the full dose's own noise, so it is rougher there), all drawn from
    the spec's seed. Items: ``ld``, ``fd`` ``[1, h, w]`` in the
    network normalisation, ``key`` ``sid:z``."""

    def __init__(self, root: str | Path, split: str, patch_size: int | None = None, augment: bool = False,
                 noise_scale: tuple[float, float] | None = None):
        self.store = CTPairStore(root)
        if patch_size is not None and (not isinstance(patch_size, int) or patch_size < 8):
            raise InputError("data.patch_size", f"must be an integer >= 8 or null, got {patch_size!r}")
        if noise_scale is not None and not (len(noise_scale) == 2 and 0 < noise_scale[0] <= noise_scale[1]):
            raise InputError("data.noise_scale", f"must be [low, high] with 0 < low <= high, got {noise_scale!r}")
        self.patch_size, self.augment, self.noise_scale = patch_size, augment, noise_scale
        self.items = [(sid, z) for sid in self.store.subjects(split)
                      for z in range(self.store.record(sid)["shape"][0])]
        if not self.items:
            raise InputError(self.store.root, f"split '{split}' has no slices")

    def __len__(self) -> int:
        return len(self.items)

    def _patch(self, ld: np.ndarray, fd: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = self.patch_size
        h, w = fd.shape
        if p > h or p > w:
            raise InputError("data.patch_size", f"a {p}x{p} patch does not fit a {h}x{w} slice")
        for _ in range(PATCH_TRIES):
            y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            if fd[y : y + p, x : x + p].mean() > BODY_HU:
                break
        return ld[y : y + p, x : x + p], fd[y : y + p, x : x + p]

    def __getitem__(self, spec: ItemSpec | int) -> dict[str, Any]:
        spec = spec if isinstance(spec, ItemSpec) else ItemSpec(int(spec))
        sid, z = self.items[spec.index]
        rng = np.random.default_rng(spec.seed)
        realisation = int(rng.integers(self.store.record(sid)["realisations"])) if self.patch_size else 0
        ld, fd = self.store.slice_pair(sid, z, realisation)
        if self.augment:
            ld, fd = augment_arrays([ld, fd], rng)
        if self.patch_size is not None:
            ld, fd = self._patch(ld, fd, rng)
        if self.noise_scale is not None:
            ld = fd + float(rng.uniform(*self.noise_scale)) * (ld - fd)
        return {"ld": to_unit(ld), "fd": to_unit(fd), "key": f"{sid}:{z}"}

    def volumes(self, subjects: set[str] | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """``(subject, ld [Z, H, W], fd [Z, H, W])`` in HU (realisation 0), one subject at a time."""
        for sid in dict.fromkeys(sid for sid, _ in self.items):
            if subjects is None or sid in subjects:
                yield (sid, *self.store.volume_pair(sid))
