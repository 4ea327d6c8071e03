"""``medsr prepare ldct ROOT OUT``: paired quarter-dose / full-dose CT of the Mayo / TCIA low-dose layout into a
CT pair store (:mod:`medsr.data.ct_pairs`).

Layout: one folder per patient below ``ROOT`` (``L067``, ``C002``, ``N001``, ...), holding, at any depth, one
DICOM series folder whose path names the full dose (a path part containing ``full``) and one the low dose
(``quarter`` or ``low``), as in the AAPM/Mayo 2016 Grand Challenge (``L067/full_1mm``, ``L067/quarter_1mm``) and
TCIA's LDCT-and-Projection-data (``.../Full Dose Images``, ``.../Low Dose Images``). ``slice_mm`` (1 or 3) keeps
only folders whose path contains ``1mm`` / ``3mm`` when a patient has both.

Pairing: both series are read in HU (rescale slope and intercept required, :func:`medsr.io.dicom.read_dicom_series`),
must share the in-plane grid (shape, pixel spacing, orientation and origin within 0.01 mm), and slices are paired
by their position along the slice normal (within 0.01 mm); a pair where fewer than :data:`MIN_PAIRED` of the
full-dose slices find a partner is a mismatched LD/FD pair and an :class:`InputError` naming both folders.
Nothing is written unless every patient pairs.

Splits (patients, never slices):

* ``redcnn``: test patient L506 of the 2016 Grand Challenge, as in the RED-CNN code (Chen et al., IEEE TMI 2017,
  and the public RED-CNN reimplementations that follow it); every other patient trains. RED-CNN names no
  validation patient, so ``val`` repeats the test patient (``medsr train`` exports the final weights, not the
  validation-selected ones).
* ``ldctbench``: LDCT-bench's published patient lists (Eulig et al., Med. Phys. 2024; eeulig/ldct-benchmark,
  ``ldctbench/data/info.yml``: per anatomy, chest ``C``, abdomen ``L`` and neuro ``N``, 35 train, 10 validation and
  5 test patients of TCIA's LDCT-and-Projection-data, :data:`LDCTBENCH`). Listed patients that are not below the
  root are left out and reported in one line; patients below the root that no list names are left out too; a
  split that ends up empty is an error. Their low dose is the TCIA data's: 10 % of the full dose for chest, 25 %
  for abdomen and neuro, so a chest score is not comparable with the others.
* a path to such a JSON file; a patient in train and in val or test is an error naming the patient.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from medsr.ct.units import check_ct
from medsr.data.ct_pairs import write_pair_store
from medsr.data.heldout import refuse_heldout
from medsr.data.prepare.common import Preparer, split_summary
from medsr.errors import InputError
from medsr.io.dicom import RESCALE_TAGS, read_dicom_series
from medsr.registry import DATASETS

MIN_PAIRED = 0.9
TOLERANCE_MM = 0.01
REDCNN_TEST = "L506"
# LDCT-bench's lists (eeulig/ldct-benchmark ldctbench/data/info.yml: train_set, val_set, test_set), in its order.
LDCTBENCH = {
    "train": ("C095 C261 C296 C218 C224 C267 C099 C030 C241 C162 C268 C128 C252 C234 C130 C246 C124 C077 C002 C021 "
              "C203 C111 C179 C012 C081 C004 C120 C193 C166 C257 C160 C016 C027 C050 C158 "
              "L081 L248 L203 L219 L210 L277 L057 L229 L131 L114 L004 L237 L148 L145 L116 L150 L110 L232 L134 L056 "
              "L075 L209 L019 L064 L299 L160 L049 L072 L071 L273 L175 L178 L125 L266 L170 "
              "N190 N082 N072 N175 N236 N181 N204 N270 N156 N140 N293 N132 N141 N105 N180 N264 N160 N202 N085 N051 "
              "N177 N209 N216 N298 N187 N100 N113 N265 N005 N076 N169 N053 N127 N012 N030").split(),
    "val": ("C202 C219 C227 C258 C067 C295 C190 C232 C052 C107 L033 L187 L123 L058 L212 L077 L179 L014 L186 L193 "
            "N056 N024 N079 N139 N300 N198 N279 N047 N188 N252").split(),
    "test": "C121 C249 C170 C135 C280 L241 L107 L006 L221 L220 N176 N138 N153 N284 N090".split(),
}
FULL_WORDS, LOW_WORDS = ("full",), ("quarter", "low")


def _series_folders(patient: Path, words: tuple[str, ...], slice_mm: int | None) -> list[Path]:
    folders = {p.parent for p in patient.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", ".ima")}
    chosen = []
    for folder in sorted(folders):
        parts = [part.lower() for part in folder.relative_to(patient).parts]
        if any(w in part for part in parts for w in words) and (slice_mm is None or f"{slice_mm}mm" in
                                                                  str(folder.relative_to(patient)).lower()):
            chosen.append(folder)
    return chosen


def find_pairs(root: Path, slice_mm: int | None = None) -> dict[str, tuple[Path, Path]]:
    """``{patient: (low-dose folder, full-dose folder)}`` of every patient folder below ``root``."""
    if not root.is_dir():
        raise InputError(root, "is not a folder")
    pairs = {}
    for patient in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        full = _series_folders(patient, FULL_WORDS, slice_mm)
        low = [f for f in _series_folders(patient, LOW_WORDS, slice_mm) if f not in full]
        if len(full) != 1 or len(low) != 1:
            found = ", ".join(str(f.relative_to(root)) for f in full + low) or "none"
            raise InputError(patient, f"needs one full-dose and one low-dose DICOM series folder ('full' / "
                             f"'quarter' or 'low' in the path; --slice-mm 1|3 picks one thickness), found: {found}")
        pairs[patient.name] = (low[0], full[0])
    if not pairs:
        raise InputError(root, "holds no patient folders")
    return pairs


def pair_slices(low: Path, full: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ld [Z, H, W], fd [Z, H, W], affine)`` of the slices both series share (HU; store layout ``(z, h, w)``,
    ``h`` the DICOM rows)."""

    refuse_heldout(p for folder in (low, full) for p in folder.iterdir())
    (ld, ld_affine), (fd, fd_affine) = (read_dicom_series(f, required=RESCALE_TAGS) for f in (low, full))
    for folder, volume in ((low, ld), (full, fd)):
        check_ct(folder, volume)
    same_plane = ld.shape[:2] == fd.shape[:2] and np.allclose(ld_affine[:3, :2], fd_affine[:3, :2],
                                                               atol=TOLERANCE_MM)
    normal = fd_affine[:3, 2] / np.linalg.norm(fd_affine[:3, 2])
    offset = ld_affine[:3, 3] - fd_affine[:3, 3]
    if not same_plane or np.linalg.norm(offset - (offset @ normal) * normal) > TOLERANCE_MM:
        raise InputError(low, f"mismatched LD/FD pair: its in-plane grid ({ld.shape[0]}x{ld.shape[1]}) differs "
                         f"from {full}'s ({fd.shape[0]}x{fd.shape[1]}, spacing, orientation or origin)")

    def positions(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
        return (affine[:3, 3] + np.arange(volume.shape[2])[:, None] * affine[:3, 2]) @ normal

    z_ld, z_fd = positions(ld, ld_affine), positions(fd, fd_affine)
    nearest = np.abs(z_fd[:, None] - z_ld[None, :]).argmin(axis=1)
    matched = np.abs(z_ld[nearest] - z_fd) <= TOLERANCE_MM
    if matched.sum() < max(1, math.ceil(MIN_PAIRED * len(z_fd))):
        raise InputError(low, f"mismatched LD/FD pair: only {int(matched.sum())} of {full}'s {len(z_fd)} slice "
                         "positions have a low-dose slice at the same position")
    keep = np.flatnonzero(matched)
    # store index (z, h, w) is voxel (i, j, k) = (w, h, keep[0] + z) of the full-dose series (kept slices that
    # are not contiguous make the affine's z step an approximation)
    affine = fd_affine @ np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, keep[0]], [0, 0, 0, 1]], dtype=float)
    transpose = (2, 1, 0)  # [columns, rows, slices] -> [slices, rows, columns]
    return (np.ascontiguousarray(ld[:, :, nearest[keep]].transpose(transpose)),
            np.ascontiguousarray(fd[:, :, keep].transpose(transpose)), affine)


def ldctbench_split(patients: list[str], root: str | Path = "the root") -> tuple[dict[str, list[str]], str]:
    """LDCT-bench's lists (:data:`LDCTBENCH`) restricted to ``patients``, and one line naming the listed patients
    that are missing and the given ones that no list names ("" when neither); an empty split is an
    :class:`InputError`."""
    given = set(patients)
    lists = {name: [p for p in ids if p in given] for name, ids in LDCTBENCH.items()}
    listed = {p for ids in LDCTBENCH.values() for p in ids}
    missing, unlisted = sorted(listed - given), sorted(given - listed)
    empty = [name for name, ids in lists.items() if not ids]
    if empty:
        raise InputError("--split", f"ldctbench: no patient of LDCT-bench's {' or '.join(empty)} list is below "
                         f"{root} (TCIA LDCT-and-Projection-data ids, e.g. {', '.join(LDCTBENCH[empty[0]][:3])})")
    parts = []
    if missing:
        parts.append(f"{len(missing)} of LDCT-bench's {len(listed)} patients are not below {root} and are left "
                     f"out: {', '.join(missing)}")
    if unlisted:
        parts.append(f"{len(unlisted)} patients below it are in none of its lists and are left out: "
                     f"{', '.join(unlisted)}")
    return lists, ("ldctbench split: " + "; ".join(parts)) if parts else ""


def make_split(patients: list[str], split: str, root: str | Path = "the root") -> tuple[dict[str, list[str]], str]:
    """The ``redcnn`` or ``ldctbench`` split of ``patients``, or the lists of a JSON file, and a line to report
    (:func:`ldctbench_split`; "" otherwise)."""
    if split == "ldctbench":
        return ldctbench_split(patients, root)
    if split == "redcnn":
        if REDCNN_TEST not in patients:
            raise InputError("--split", f"redcnn needs the test patient {REDCNN_TEST}, not among {', '.join(patients)}")
        return {"train": [p for p in patients if p != REDCNN_TEST], "val": [REDCNN_TEST], "test": [REDCNN_TEST]}, ""
    path = Path(split)
    if not path.is_file():
        raise InputError("--split", f"must be redcnn, ldctbench or a JSON file of patient lists, got {split!r}")
    try:
        lists = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable JSON split ({err})") from None
    if not isinstance(lists, dict) or not all(isinstance(lists.get(k, []), list) for k in ("train", "val", "test")):
        raise InputError(path, "must be {\"train\": [...], \"val\": [...], \"test\": [...]}")
    unknown = sorted({p for k in ("train", "val", "test") for p in lists.get(k, [])} - set(patients))
    if unknown:
        raise InputError(path, f"names patients not below the root: {', '.join(unknown)}")
    for held_out in ("val", "test"):  # val and test may share patients (redcnn's split does), train may not
        leaked = sorted(set(lists.get("train", [])) & set(lists.get(held_out, [])))
        if leaked:
            raise InputError(path, f"patient(s) {', '.join(leaked)} in both train and {held_out}: a held-out "
                                   "patient must not be trained on")
    return {k: list(lists.get(k, [])) for k in ("train", "val", "test")}, ""


def prepare_ldct(root: str | Path, out_dir: str | Path, split: str = "redcnn", slice_mm: int | None = None,
                 progress: bool = True) -> dict[str, list[str]]:
    """Pair every patient below ``root`` and write the store to ``out_dir``; returns the split."""
    root = Path(root)
    pairs = find_pairs(root, slice_mm)
    lists, note = make_split(sorted(pairs), split, root)
    if note:
        print(f"medsr: note: {note}", file=sys.stderr, flush=True)
    used = set(lists["train"]) | set(lists["val"]) | set(lists["test"])
    subjects: dict[str, Any] = {}
    for patient in sorted(used):
        low, full = pairs[patient]
        if progress:
            print(f"ldct: {patient}: {low.relative_to(root)} + {full.relative_to(root)}", flush=True)
        ld, fd, affine = pair_slices(low, full)
        subjects[patient] = {"fd": fd, "ld": ld[None], "affine": affine,
                             "pixel_mm": float(np.linalg.norm(affine[:3, 1])),
                             "record": {"low_dose": str(low.relative_to(root)),
                                        "full_dose": str(full.relative_to(root))}}
    write_pair_store(out_dir, subjects, lists, {"dataset": "ldct", "root": str(root.resolve()), "split": split,
                                                "slice_mm": slice_mm, "low_dose": "measured"})
    return lists


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="source folder (one folder per patient)")
    parser.add_argument("out_dir", help="output folder (must not exist)")
    parser.add_argument("--split", default="redcnn", help="redcnn (test patient L506; default), ldctbench "
                        "(LDCT-bench's published patient lists), or a JSON file {train, val, test} of patient ids")
    parser.add_argument("--slice-mm", type=int, choices=(1, 3), help="keep the 1 mm or 3 mm series when a "
                        "patient has both")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> str:
    split = prepare_ldct(args.src, args.out_dir, args.split, args.slice_mm, not args.no_progress)
    return split_summary(args.out_dir, split, "patients")


DATASETS.register("ldct")(Preparer("Mayo/TCIA low-dose CT below SRC: per patient folder, a full-dose and a "
                                   "quarter-dose DICOM series", arguments, run, inputs=("src", "split")))
