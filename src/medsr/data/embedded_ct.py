"""The embedded CT dataset: real CT slices that installed packages ship, with a low dose simulated by medsr's
own projection-domain noise insertion (:func:`medsr.ct.dose.simulate_low_dose`), so ``task: denoise``, ``medsr
demo --task ct`` and the CT benchmark run with no download.

Sources (each file checked against its SHA-256):

* ``head``: ``693_UNCR.dcm`` of pydicom-data (MIT), an axial head CT, 512x512 at 0.479 mm, 140 kVp;
* ``abdomen``: ``explicit_VR-UN.dcm`` of pydicom-data, an axial contrast abdominal CT, 512x512 at 0.859 mm;
* ``neck``: ``CT_small.dcm`` of pydicom's test files (MIT), a 128x128 crop at 0.661 mm (GE, 120 kVp).

Split by image: ``head`` and ``neck`` train, ``abdomen`` validates (and is the test split: another anatomy
than training). The neck crop covers only 85 mm, so its simulated noise is too low for the anatomy (the
projections miss the tissue outside the crop) while its own full-dose noise is real: as a validation image it
would reward keeping noise, so it only trains. A fourth
real CT image from another source, pydicom's ``J2K_pixelrep_mismatch.dcm`` (head, 0.431 mm, JPEG 2000), is a
held-out transfer case (``heldout.json``): :func:`medsr.data.heldout.refuse_heldout` guards every file read here.

Low dose: dose fraction :data:`DOSE` of the scan, the images being real full-dose scans (only the missing noise
is inserted, :mod:`medsr.ct.dose`), with the physical :data:`I0` (photons per reading of the scanner geometry of
:mod:`medsr.ct.geometry`, the same dose at every pixel size) and electronic noise variance
:data:`ELECTRONIC_NOISE`, parallel beam, Hann-filtered FBP; training images get :data:`TRAIN_REALISATIONS` noise
realisations, the others one. ``size`` resamples
every image to ``size x size`` first (area averaging, the field of view kept; for tests).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from medsr import kspace
from medsr.ct.dose import simulate_low_dose
from medsr.ct.geometry import scanner_geometry
from medsr.data.ct_pairs import is_pair_store, write_pair_store
from medsr.data.heldout import package_dir, refuse_heldout
from medsr.data.store import sha256_file
from medsr.errors import InputError

DOSE = 0.25
I0 = 1e5
ELECTRONIC_NOISE = 10.0
FILTER = "hann"
GEOMETRY = "parallel"
TRAIN_REALISATIONS = 3

SOURCES = (
    # subject, package, distribution, path in the package, split, sha256
    ("head", "data_store", "pydicom-data", "data/693_UNCR.dcm", "train",
     "cc4cdd599231922ecf63de2ddacf03d51c4588805c9154c2eef1ff49c23b32be"),
    ("abdomen", "data_store", "pydicom-data", "data/explicit_VR-UN.dcm", "val",
     "28c4a61022d7dbebec97e2f1bbdad0ed097bee2c62727c26a3f3720248c9c6e7"),
    ("neck", "pydicom", "pydicom", "data/test_files/CT_small.dcm", "train",
     "3dd31e5cc835b3f2cdd46c9da1982f59251e78518fefa8163d914631c66437d6"),
)


def source_path(package: str, distribution: str, relative: str, sha256: str) -> Path:
    """The file of an installed package, checked against its SHA-256 (an :class:`InputError` otherwise)."""
    root = package_dir(package)
    path = None if root is None else root / relative
    if path is None or not path.is_file():
        raise InputError(relative, f"the embedded CT dataset needs the package {distribution} "
                                   f"(pip install {distribution})")
    if sha256_file(path) != sha256:
        raise InputError(path, "differs from the file the embedded CT dataset was built from (SHA-256)")
    return path


def read_ct_slice(path: Path) -> tuple[np.ndarray, float]:
    """HU ``[H, W]`` (rescale slope and intercept applied) and the pixel spacing (mm) of a single-image DICOM."""
    import pydicom

    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    rows, cols = (float(v) for v in ds.PixelSpacing)
    return hu, math.sqrt(rows * cols)


def resize(hu: np.ndarray, pixel_mm: float, size: int | None) -> tuple[np.ndarray, float]:
    """``hu`` area-resampled to ``size x size`` (None: unchanged) and its new pixel spacing."""
    if size is None or size == hu.shape[0]:
        return hu, pixel_mm
    out = F.interpolate(torch.from_numpy(hu)[None, None], size=(size, size), mode="area")[0, 0].numpy()
    return out, pixel_mm * hu.shape[0] / size


def simulate(hu: np.ndarray, pixel_mm: float, realisations: int, seed: str) -> np.ndarray:
    """``[R, H, W]`` low-dose realisations of ``hu`` (HU), realisation ``r`` seeded by ``seed/r``."""
    geometry = scanner_geometry(GEOMETRY, hu.shape, pixel_mm)
    out = [simulate_low_dose(torch.from_numpy(hu), geometry, DOSE, I0, ELECTRONIC_NOISE, FILTER,
                             torch.Generator().manual_seed(kspace.seed_from_name(f"{seed}/{r}"))).numpy()
           for r in range(realisations)]
    return np.stack(out)


def axial_affine(pixel_mm: float, thickness_mm: float = 1.0) -> np.ndarray:
    """Store affine of an axial slice ``(z, h, w)`` in RAS millimetres, in the radiological layout of a DICOM
    axial image (ImageOrientationPatient 1,0,0,0,1,0): ``w`` runs from the patient's right to left (-x), ``h``
    from anterior to posterior (-y), ``z`` from inferior to superior (+z, ``thickness_mm`` apart)."""
    return np.array([[0.0, 0.0, -pixel_mm, 0.0], [0.0, -pixel_mm, 0.0, 0.0], [thickness_mm, 0.0, 0.0, 0.0],
                     [0.0, 0.0, 0.0, 1.0]])


def embedded_subjects(progress: bool = True, size: int | None = None) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(subject id, subject of write_pair_store, split)`` for each embedded slice, its low dose simulated."""
    paths = [(s, source_path(package, dist, rel, sha)) for s, package, dist, rel, _, sha in SOURCES]
    refuse_heldout(p for _, p in paths)
    for (sid, _, distribution, relative, which, sha), (_, path) in zip(SOURCES, paths):
        hu, pixel_mm = resize(*read_ct_slice(path), size)
        realisations = TRAIN_REALISATIONS if which == "train" else 1
        if progress:
            print(f"embedded CT: {sid} {hu.shape[0]}x{hu.shape[1]} at {pixel_mm:.3g} mm, simulating {realisations} "
                  f"low-dose realisation(s)", flush=True)
        ld = simulate(hu, pixel_mm, realisations, f"embedded-ct/{sid}")
        yield sid, {"fd": hu[None], "ld": ld[:, None], "affine": axial_affine(pixel_mm), "pixel_mm": pixel_mm,
                    "record": {"source": f"{distribution}: {relative}", "sha256": sha}}, which


def parameters() -> dict[str, Any]:
    """The low-dose simulation of the embedded dataset, as its store manifest records it."""
    return {"dataset": "embedded-ct", "low_dose": "simulated", "dose": DOSE, "i0": I0,
            "electronic_noise": ELECTRONIC_NOISE, "filter": FILTER, "geometry": GEOMETRY,
            "model": "Yu et al. 2012 / Zeng et al. 2015 insertion of (1/d - 1) x the full-dose noise, "
                     "x_ld = x + FBP(p_ld - p), scanner geometry 0.7 mm / 1152 views"}


def prepare_ct(out_dir: str | Path, size: int | None = None, progress: bool = True) -> Path:
    """Build the embedded CT pair store in ``out_dir`` (written atomically); returns ``out_dir``."""
    out_dir = Path(out_dir)
    subjects: dict[str, Any] = {}
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for sid, subject, which in embedded_subjects(progress, size):
        subjects[sid] = subject
        split[which].append(sid)
    split["test"] = list(split["val"])
    write_pair_store(out_dir, subjects, split, {**parameters(), "size": size})
    return out_dir


def ensure_ct(root: str | Path, progress: bool = True) -> Path:
    """The embedded CT store at ``root``, built when missing (``data.embedded: ct``)."""
    root = Path(root)
    if not is_pair_store(root):
        prepare_ct(root, progress=progress)
    return root
