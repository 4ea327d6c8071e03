"""``medsr prepare ctvol SRC OUT``: real full-dose CT volumes (NIfTI in HU, one patient per file) into a CT pair
store with a simulated low dose, optionally joined by the embedded CT slices.

Every ``*.nii`` / ``*.nii.gz`` below ``SRC`` is one patient (subject id: the file name without its suffix), read as
HU with its slices on the last axis; a file that is a development held-out scan (``heldout.json``,
``development``) is skipped with a note, so the development CT folder can be given as it is and its
held-out patient is never read. The low dose is the embedded dataset's (:mod:`medsr.data.embedded_ct`: dose 25 %,
the physical I0, electronic noise, parallel beam, Hann FBP, only the missing noise inserted), per slice, in
batches; training patients get ``realisations`` noise realisations. Split by patient: ``val`` lists the validation
patients, all others train; ``embedded=True`` adds the embedded slices with their own split (head and neck train,
abdomen validates), so a store of one real patient still has a validation image of another patient.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np
import torch

from medsr import kspace
from medsr.ct.dose import simulate_low_dose
from medsr.ct.geometry import scanner_geometry
from medsr.data import embedded_ct
from medsr.data.ct_pairs import write_pair_store
from medsr.data.heldout import is_heldout, source_name
from medsr.errors import InputError

BATCH = 8
SUFFIX = re.compile(r"\.nii(\.gz)?$")


def volume_files(src: str | Path) -> tuple[list[Path], list[Path]]:
    """The NIfTI files below ``src`` (sorted) and, apart, the held-out ones among them."""
    files = sorted(p for p in Path(src).rglob("*") if p.is_file() and SUFFIX.search(p.name))
    if not files:
        raise InputError(src, "holds no NIfTI file (*.nii, *.nii.gz)")
    held = [p for p in files if is_heldout(p)]
    return [p for p in files if p not in held], held


def read_ct_volume(path: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """HU ``[Z, H, W]`` (slices from the last NIfTI axis), the store affine ``(z, h, w)`` to world mm and the
    in-plane pixel size (mm, the geometric mean of the two spacings)."""
    try:
        image = nib.load(path)
        data = np.asarray(image.dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises many types for a broken file
        raise InputError(path, f"is not a readable NIfTI volume ({type(error).__name__})") from None
    if data.ndim != 3 or min(data.shape[:2]) < 32:
        raise InputError(path, f"is not a 3-D CT volume of axial slices (shape {data.shape})")
    if float(np.percentile(data, 1)) > -500 or float(data.max()) < 100:
        raise InputError(path, "does not look like CT in HU (no air below -500 HU or no tissue above 100 HU)")
    affine = np.asarray(image.affine, np.float64)
    store_affine = affine.copy()
    store_affine[:, :3] = affine[:, [2, 0, 1]]
    spacing = np.linalg.norm(affine[:3, :2], axis=0)
    return np.ascontiguousarray(np.moveaxis(data, 2, 0)), store_affine, float(np.sqrt(spacing.prod()))


def simulate_volume(hu: np.ndarray, pixel_mm: float, realisations: int, seed: str) -> np.ndarray:
    """``[R, Z, H, W]`` low-dose realisations of ``hu`` ``[Z, H, W]`` with the embedded dataset's parameters,
    slice ``z`` of realisation ``r`` seeded by ``seed/r/z`` (so the result does not depend on ``BATCH``)."""
    geometry = scanner_geometry(embedded_ct.GEOMETRY, hu.shape[1:], pixel_mm)
    out = np.empty((realisations, *hu.shape), np.float32)
    for r in range(realisations):
        for start in range(0, hu.shape[0], BATCH):
            stop = min(start + BATCH, hu.shape[0])
            generators = [torch.Generator().manual_seed(kspace.seed_from_name(f"{seed}/{r}/{z}"))
                          for z in range(start, stop)]
            out[r, start:stop] = simulate_low_dose(
                torch.from_numpy(hu[start:stop]), geometry, embedded_ct.DOSE, embedded_ct.I0,
                embedded_ct.ELECTRONIC_NOISE, embedded_ct.FILTER, generators).numpy()
    return out


def prepare_ct_volumes(src: str | Path, out_dir: str | Path, val: Sequence[str] = (), embedded: bool = False,
                       realisations: int = 2, progress: bool = True) -> dict[str, list[str]]:
    """Build the store (written atomically) and return its split."""
    files, held = volume_files(src)
    for path in held:
        print(f"{path}: skipped, a development held-out scan ({source_name(path)})", flush=True)
    ids = [SUFFIX.sub("", p.name) for p in files]
    if len(set(ids)) != len(ids):
        raise InputError(src, "holds two NIfTI files with the same name; subject ids must be unique")
    unknown = sorted(set(val) - set(ids))
    if unknown:
        raise InputError(src, f"has no volume for the validation subject(s) {', '.join(unknown)}")
    subjects: dict[str, Any] = {}
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for sid, path in zip(ids, files):
        hu, affine, pixel_mm = read_ct_volume(path)
        which = "val" if sid in val else "train"
        count = realisations if which == "train" else 1
        if progress:
            print(f"{path.name}: {hu.shape[0]} slices {hu.shape[1]}x{hu.shape[2]} at {pixel_mm:.3g} mm, "
                  f"simulating {count} low-dose realisation(s)", flush=True)
        subjects[sid] = {"fd": hu, "ld": simulate_volume(hu, pixel_mm, count, f"ctvol/{sid}"), "affine": affine,
                         "pixel_mm": pixel_mm, "record": {"source": str(path.name)}}
        split[which].append(sid)
    if embedded:
        for sid, subject, which in embedded_ct.embedded_subjects(progress):
            subjects[f"embedded-{sid}"] = subject
            split[which].append(f"embedded-{sid}")
    if not split["train"]:
        raise InputError(src, "leaves no training subject")
    split["test"] = list(split["val"])
    parameters = {**embedded_ct.parameters(), "dataset": "ct-volumes", "realisations": realisations,
                  "embedded": embedded}
    write_pair_store(out_dir, subjects, split, parameters)
    return split
