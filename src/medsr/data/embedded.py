"""The embedded default dataset: MNI ICBM152 2009a (symmetric) as a three-contrast slice store, no download.

Source: the template files that nilearn's wheel ships in ``nilearn/datasets/data/``
(Fonov et al., "Unbiased average age-appropriate atlases for pediatric studies", NeuroImage 54, 2011;
Fonov et al., "Unbiased nonlinear average age-appropriate brain templates from birth to adulthood",
NeuroImage 47, S102, 2009): the brain-extracted T1 and the grey- and white-matter probability maps, 1 mm
isotropic, 197 x 233 x 189 voxels.

Contrasts
---------
* ``T1``: the template itself.
* ``T2`` and ``PD``: synthesised voxel by voxel as the partial-volume mixture
  ``S = sum_t p_t * PD_t * (1 - exp(-TR / T1_t)) * exp(-TE / T2_t)`` of the spin-echo signal of CSF, GM and WM
  at 3 T (:data:`TISSUES`, :data:`SEQUENCES`).
* CSF probability: the template's brain mask (T1 > 0, which contains the ventricles and sulcal CSF) minus GM
  minus WM, clipped to [0, 1]; GM and WM are zeroed outside the mask so every contrast shares its support.
* Labels ``uint8``: 0 background (outside the mask), else 1 + the most probable of CSF, GM, WM.

Geometry
--------
Axial slices stored ``[Z, H, W]`` = (inferior→superior, anterior→posterior, left→right in voxel order, i.e.
rows run from the front of the head to the back so figures look like radiology viewers show them). The
in-plane field of view is the bounding box of the brain over the kept slices, grown symmetrically to a multiple
of :data:`PAD_MULTIPLE` (zero outside the source grid). Each subject's ``affine`` maps its store index
``(z, h, w)`` to MNI millimetres.

The whole kept volumes are also written as NIfTI (``OUT/nifti/{T1,T2,PD,labels}.nii.gz``, axial slices on the
last array axis, MNI millimetre affine) so every command can be tried on them.

Slices and split
----------------
Axial slices whose brain area is below :data:`MIN_AREA_FRACTION` of the largest slice's are skipped. The kept
range is cut into :data:`NUM_SLABS` contiguous slabs of (almost) equal thickness; slab ``i`` is the subject
``mni_slab{i:02d}`` and goes to the split :data:`SLAB_SPLITS[i]` (validation and test slabs alternate through
the brain). Where two neighbouring slabs belong to different splits, :data:`SPLIT_GAP` slices between them are
dropped (half from each side), so no validation or test slice has a training slice within ``SPLIT_GAP // 2``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from medsr.data.store import MANIFEST_FILE, SPLIT_FILE, SPLITS, STORE_FILE, SliceStore, StoreWriter, sha256_file
from medsr.errors import InputError
from medsr.io.atomic import atomic_dir

NAME = "mni_icbm152_2009a"
SOURCE_FILES = {part: f"mni_icbm152_{part}_tal_nlin_sym_09a_converted.nii.gz" for part in ("t1", "gm", "wm")}
CONTRASTS = ("T1", "T2", "PD")
NIFTI_DIR = "nifti"
LABEL_NAMES = {0: "background", 1: "CSF", 2: "GM", 3: "WM"}
FIELD_STRENGTH_T = 3.0
# Relaxation times (ms) at 3 T and relative proton densities (water content, CSF = 1).
# GM/WM T1 and T2: Wansapura et al., "NMR relaxation times in the human brain at 3.0 Tesla", JMRI 9:531-538
# (1999). CSF T1: Lu et al., "Routine clinical brain MRI sequences for use at 3.0 Tesla", JMRI 22:13-22 (2005).
# CSF T2: a rounded value for free water in vivo (~2 s); at TE <= 100 ms it changes CSF signal by < 3 %.
# Proton densities: typical water contents (GM ~0.80, WM ~0.70) as reviewed by Tofts, "PD: proton density of
# tissue water", ch. 4 of Quantitative MRI of the Brain (Wiley, 2003).
TISSUES = {
    "CSF": {"T1": 4163.0, "T2": 2000.0, "PD": 1.00},
    "GM": {"T1": 1331.0, "T2": 110.0, "PD": 0.80},
    "WM": {"T1": 832.0, "T2": 79.6, "PD": 0.70},
}
# Spin-echo protocols (ms): long TR for both; long TE weights T2, short TE leaves proton density.
SEQUENCES = {"T2": {"TR": 5000.0, "TE": 100.0}, "PD": {"TR": 5000.0, "TE": 12.0}}
MIN_AREA_FRACTION = 0.10
PAD_MULTIPLE = 8
NUM_SLABS = 10
SLAB_SPLITS = ("train", "train", "test", "train", "val", "train", "test", "train", "val", "train")
SPLIT_GAP = 4


def source_dir() -> Path:
    """Folder of nilearn's bundled data files (located from the installed package, never downloaded)."""
    try:
        import nilearn
    except ImportError:
        raise InputError("nilearn", "not installed: the embedded MNI dataset needs its bundled files") from None
    return Path(nilearn.__file__).parent / "datasets" / "data"


def spin_echo(pd: float, t1: float, t2: float, tr: float, te: float) -> float:
    """Spin-echo signal ``PD * (1 - exp(-TR / T1)) * exp(-TE / T2)`` (times in the same unit)."""
    return pd * (1.0 - math.exp(-tr / t1)) * math.exp(-te / t2)


def tissue_signals(sequence: dict[str, float]) -> dict[str, float]:
    """Pure-tissue signal of CSF, GM and WM for one spin-echo ``{"TR", "TE"}`` protocol."""
    return {name: spin_echo(p["PD"], p["T1"], p["T2"], sequence["TR"], sequence["TE"]) for name, p in TISSUES.items()}


def tissue_probabilities(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> dict[str, np.ndarray]:
    """CSF, GM, WM probabilities inside the brain mask ``t1 > 0`` (CSF = mask - GM - WM, clipped to [0, 1])."""
    brain = (t1 > 0).astype(np.float32)
    gm, wm = gm * brain, wm * brain
    return {"CSF": np.clip(brain - gm - wm, 0.0, 1.0), "GM": gm, "WM": wm}


def synthesise(probabilities: dict[str, np.ndarray], sequence: dict[str, float]) -> np.ndarray:
    """Partial-volume spin-echo image: the probability-weighted sum of the tissues' signals."""
    signals = tissue_signals(sequence)
    return sum(probabilities[name] * np.float32(signals[name]) for name in TISSUES).astype(np.float32)


def tissue_labels(probabilities: dict[str, np.ndarray], brain: np.ndarray) -> np.ndarray:
    """0 outside ``brain``, else 1 + argmax over (CSF, GM, WM)."""
    stacked = np.stack([probabilities[name] for name in ("CSF", "GM", "WM")])
    return np.where(brain, 1 + np.argmax(stacked, axis=0), 0).astype(np.uint8)


def kept_slices(brain: np.ndarray) -> tuple[int, int]:
    """First and last (inclusive) axial index whose brain area is at least MIN_AREA_FRACTION of the largest."""
    area = brain.sum(axis=(0, 1))
    kept = np.flatnonzero(area >= MIN_AREA_FRACTION * area.max())
    return int(kept[0]), int(kept[-1])


def padded_window(lo: int, hi: int, multiple: int) -> tuple[int, int]:
    """Start and size of the window covering ``[lo, hi]`` grown symmetrically to a multiple of ``multiple``."""
    size = hi - lo + 1
    padded = -(-size // multiple) * multiple
    return lo - (padded - size) // 2, padded


def take_window(volume: np.ndarray, starts: tuple[int, int], sizes: tuple[int, int]) -> np.ndarray:
    """``volume[x0:x0+nx, y0:y0+ny, :]`` with zeros where the window leaves the array."""
    out = np.zeros(tuple(sizes) + volume.shape[2:], dtype=volume.dtype)
    src, dst = [], []
    for axis, (start, size) in enumerate(zip(starts, sizes)):
        a, b = max(start, 0), min(start + size, volume.shape[axis])
        src.append(slice(a, b))
        dst.append(slice(a - start, b - start))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def slab_ranges(first: int, last: int) -> list[tuple[int, int]]:
    """Half-open axial ranges of the slabs after cutting ``[first, last]`` and removing gaps between splits."""
    edges = np.round(np.linspace(first, last + 1, NUM_SLABS + 1)).astype(int)
    ranges = [[int(edges[i]), int(edges[i + 1])] for i in range(NUM_SLABS)]
    for i in range(NUM_SLABS - 1):
        if SLAB_SPLITS[i] != SLAB_SPLITS[i + 1]:
            ranges[i][1] -= (SPLIT_GAP + 1) // 2
            ranges[i + 1][0] += SPLIT_GAP // 2
    return [(a, b) for a, b in ranges]


def _store_affine(source_affine: np.ndarray, x0: int, y0: int, height: int, z0: int) -> np.ndarray:
    """Affine of store index (z, h, w): source voxel (x, y, z) = (x0 + w, y0 + height - 1 - h, z0 + z)."""
    index_map = np.array(
        [[0, 0, 1, x0], [0, -1, 0, y0 + height - 1], [1, 0, 0, z0], [0, 0, 0, 1]], dtype=np.float64
    )
    return source_affine @ index_map


def _to_store_layout(volume: np.ndarray) -> np.ndarray:
    """Source ``[x, y, z]`` window to ``[z, h, w]`` with rows from anterior to posterior."""
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0))[:, ::-1, :])


def _read_sources(workers: int) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, dict[str, str]]]:
    import nibabel as nib

    folder = source_dir()
    paths = {part: folder / name for part, name in SOURCE_FILES.items()}
    for path in paths.values():
        if not path.is_file():
            raise InputError(path, "missing from the installed nilearn package")

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        img = nib.load(str(path))
        return np.asarray(img.dataobj, dtype=np.float32), img.affine

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        loaded = dict(zip(paths, pool.map(read, paths.values())))
        hashes = dict(zip(paths, pool.map(sha256_file, paths.values())))
    affine = loaded["t1"][1]
    sources = {part: {"file": f"nilearn/datasets/data/{SOURCE_FILES[part]}", "sha256": hashes[part]} for part in paths}
    return {part: data for part, (data, _) in loaded.items()}, affine, sources


def _parameters(sources: dict[str, Any], window: dict[str, Any]) -> dict[str, Any]:
    return {
        "sources": sources,
        "field_strength_T": FIELD_STRENGTH_T,
        "relaxation_ms_and_pd": TISSUES,
        "sequences_ms": SEQUENCES,
        "signal": "spin echo S = PD (1 - exp(-TR/T1)) exp(-TE/T2), partial-volume mixture of CSF/GM/WM",
        "T1": "the template's T1 itself",
        "csf_rule": "clip(brain mask (T1 > 0) - GM - WM, 0, 1)",
        "labels_rule": "0 outside the brain mask, else 1 + argmax(CSF, GM, WM)",
        "orientation": "[Z, H, W] = inferior->superior, anterior->posterior, source x order; affine per subject",
        "min_area_fraction": MIN_AREA_FRACTION,
        "pad_multiple": PAD_MULTIPLE,
        "split_rule": {"num_slabs": NUM_SLABS, "slab_splits": list(SLAB_SPLITS), "gap_slices": SPLIT_GAP},
        **window,
    }


def _build(out_dir: Path, workers: int, progress: bool) -> None:
    from tqdm import tqdm

    data, source_affine, sources = _read_sources(workers)
    probs = tissue_probabilities(data["t1"], data["gm"] / 255.0, data["wm"] / 255.0)
    brain = data["t1"] > 0
    volumes = {"T1": data["t1"], **{name: synthesise(probs, SEQUENCES[name]) for name in ("T2", "PD")}}
    labels = tissue_labels(probs, brain)

    first, last = kept_slices(brain)
    footprint = np.argwhere(brain[:, :, first : last + 1].any(axis=2))
    x0, width = padded_window(int(footprint[:, 0].min()), int(footprint[:, 0].max()), PAD_MULTIPLE)
    y0, height = padded_window(int(footprint[:, 1].min()), int(footprint[:, 1].max()), PAD_MULTIPLE)

    def crop(vol: np.ndarray) -> np.ndarray:
        return _to_store_layout(take_window(vol, (x0, y0), (width, height)))

    volumes = {name: crop(vol) for name, vol in volumes.items()}
    labels = crop(labels)

    writer = StoreWriter(out_dir, CONTRASTS, LABEL_NAMES)
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    ranges = slab_ranges(first, last)
    for index, (z0, z1) in enumerate(tqdm(ranges, desc="mni slabs", disable=not progress)):
        sid = f"mni_slab{index:02d}"
        split[SLAB_SPLITS[index]].append(sid)
        writer.add_subject(
            sid,
            {name: vol[z0:z1] for name, vol in volumes.items()},
            labels=labels[z0:z1],
            affine=_store_affine(source_affine, x0, y0, height, z0),
            record={"source_z": [z0, z1], "split": SLAB_SPLITS[index]},
        )
    window = {"kept_z": [first, last + 1], "window_xy": {"x0": x0, "width": width, "y0": y0, "height": height}}
    writer.finish(NAME, split, _parameters(sources, window))
    whole = slice(first, last + 1)
    _write_nifti(out_dir / NIFTI_DIR, {**volumes, "labels": labels}, whole,
                 _store_affine(source_affine, x0, y0, height, first))


def _write_nifti(folder: Path, volumes: dict[str, np.ndarray], z: slice, store_affine: np.ndarray) -> None:
    """Whole kept volumes as NIfTI ``[w, h, z]`` (axial slices on the last axis) for trying the commands."""
    import nibabel as nib

    folder.mkdir()
    to_store = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
    for name, vol in volumes.items():
        data = np.ascontiguousarray(np.transpose(vol[z], (2, 1, 0)))
        img = nib.Nifti1Image(data, store_affine @ to_store)
        img.header.set_xyzt_units("mm")
        nib.save(img, str(folder / f"{name}.nii.gz"))


def prepare_mni(out_dir: str | Path, *, workers: int = 1, progress: bool = True) -> Path:
    """Build the MNI store in ``out_dir``; files appear only once complete.

    ``out_dir`` must be missing, an empty folder (the whole store is renamed onto it in one step) or an MNI store
    medsr made (its manifest's ``name`` is :data:`NAME`; its store files and ``nifti/`` are replaced). Any other
    folder (a CT store, another dataset, a user's own files) is refused before anything is read or written.
    ``workers`` threads read and hash the three source files.
    """
    out_dir = Path(out_dir)
    rebuild = _existing_mni_store(out_dir)
    if not rebuild:
        with atomic_dir(out_dir) as tmp:
            _build(tmp, workers, progress)
        return out_dir
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent) as tmp:
        _build(Path(tmp), workers, progress)
        shutil.rmtree(out_dir / NIFTI_DIR, ignore_errors=True)
        for name in (NIFTI_DIR, STORE_FILE, SPLIT_FILE, MANIFEST_FILE):  # the manifest last: a store is done
            os.replace(Path(tmp) / name, out_dir / name)
    return out_dir


def _existing_mni_store(out_dir: Path) -> bool:
    """True when ``out_dir`` is an MNI store medsr made (to be rebuilt in place), False when it is missing or an
    empty folder; :class:`InputError` for anything else, which is never replaced."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a directory")
    if not any(out_dir.iterdir()):
        return False
    other = _manifest_name(out_dir)
    if other == NAME:
        return True
    held = f"dataset '{other}'" if isinstance(other, str) else "files that are not a medsr MNI store"
    raise InputError(out_dir, f"holds another dataset ({held}); it is never replaced: choose an empty or new "
                     "directory")


def _manifest_name(out_dir: Path) -> str | None:
    """Name in an existing readable manifest, else None."""
    try:
        return json.loads((out_dir / MANIFEST_FILE).read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def is_finished(out_dir: str | Path) -> bool:
    """True when ``out_dir`` holds a complete MNI store (manifest written last, every split subject listed)."""
    try:
        store = SliceStore(out_dir)
    except (InputError, ValueError, OSError):
        return False
    subjects = store.manifest.get("subjects", {})
    listed = [sid for name in SPLITS for sid in store.split.get(name, [])]
    return store.manifest.get("name") == NAME and len(listed) == NUM_SLABS and all(s in subjects for s in listed)


def ensure_mni(out_dir: str | Path) -> Path:
    """Return ``out_dir`` if it holds a finished MNI store, else prepare it there first (quietly)."""
    out_dir = Path(out_dir)
    return out_dir if is_finished(out_dir) else prepare_mni(out_dir, progress=False)
