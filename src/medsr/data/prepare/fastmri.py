"""fastMRI (Zbontar et al., 2018; https://fastmri.med.nyu.edu/) knee pairs: HDF5 files with ``kspace`` and
``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil), paired by a CSV file.

The CSV has the header ``pd,pdfs[,subject]``: one row per knee, the coronal PD and PD-FS files (paths relative
to the source folder, or absolute). As in the multi-contrast fastMRI papers, the target is PD-FS (stored as
``PDFS``) and the reference is PD (``PD``). The reconstruction is the high-resolution magnitude (``_rss`` when a
file has both). Slices are the files' first axis and are matched by index, so both files must have the same number
of slices; both are centre-cropped to their common in-plane size before the crop/pad to ``--multiple``. The subject
id is the ``subject`` column, else the PD-FS file name without its suffix. The store affine is diagonal with the
spacing of the ISMRMRD header's reconstruction space (slice thickness, then pixel size), or the identity when a
file has no such header.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from medsr.data.prepare.common import Context, Dataset, Prepared, Subject, centre_fit, check_sid, \
    check_source_dir, file_record, finish_subject, preparer, read_csv, resolve, unique_subjects
from medsr.data.store import sha256_file
from medsr.errors import InputError, require

TARGET, REFERENCE = "PDFS", "PD"
RECONSTRUCTIONS = ("reconstruction_rss", "reconstruction_esc")
ISMRMRD = "{http://www.ismrm.org/ISMRMRD}"


def _spacing(header: bytes | None) -> list[float] | None:
    """(slice, row, column) spacing in mm from an ISMRMRD XML header's reconstruction space, if readable."""
    if header is None:
        return None
    try:
        space = ET.fromstring(header).find(f"{ISMRMRD}encoding/{ISMRMRD}reconSpace")
        fov = [float(space.find(f"{ISMRMRD}fieldOfView_mm/{ISMRMRD}{a}").text) for a in "zyx"]
        size = [float(space.find(f"{ISMRMRD}matrixSize/{ISMRMRD}{a}").text) for a in "yx"]
    except (ET.ParseError, AttributeError, TypeError, ValueError):
        return None
    return [fov[0], fov[1] / size[0], fov[2] / size[1]]


def read_reconstruction(path: Path) -> tuple[np.ndarray, str, list[float] | None]:
    """The ``[slices, H, W]`` reconstruction of a fastMRI file, which one it is, and its spacing."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            key = next((k for k in RECONSTRUCTIONS if k in f), None)
            require(key is not None, path, f"has no {' or '.join(RECONSTRUCTIONS)} dataset")
            data = np.asarray(f[key], dtype=np.float32)
            header = f["ismrmrd_header"][()] if "ismrmrd_header" in f else None
    except InputError:
        raise
    except Exception as err:  # h5py raises OSError, KeyError, ValueError... for damaged files
        raise InputError(path, f"not a readable fastMRI HDF5 file ({type(err).__name__}: {err})") from None
    require(data.ndim == 3, path, f"expected {key} of shape [slices, H, W], got {data.shape}")
    require(bool(np.isfinite(data).all()), path, "non-finite values (NaN or Inf)")
    return data, key, _spacing(header)


def load_subject(subject: Subject, context: Context) -> Prepared:
    """Worker: read one PD-FS/PD pair, match slices by index, crop to the common in-plane size."""
    target, target_key, spacing = read_reconstruction(subject.target)
    reference, reference_key, _ = read_reconstruction(subject.reference)
    require(len(target) == len(reference), subject.target,
            f"has {len(target)} slices but its reference {subject.reference} has {len(reference)} "
            "(slices are matched by index)")
    common = tuple(min(a, b) for a, b in zip(target.shape[1:], reference.shape[1:]))
    volumes = {context.target: centre_fit(target, common), context.reference: centre_fit(reference, common)}
    record = {
        "sources": {context.target: {**file_record(subject.target, context.root), "dataset": target_key},
                    context.reference: {**file_record(subject.reference, context.root), "dataset": reference_key}},
        "source_shape": {context.target: list(target.shape), context.reference: list(reference.shape)},
        "common_in_plane": list(common),
        "reference_resampled": False,
        "slice_axis": 0,
        "spacing_mm": spacing,
    }
    affine = np.diag([*(spacing or [1.0, 1.0, 1.0]), 1.0])
    return finish_subject(subject.sid, volumes, None, affine, context.target, context.options, subject.target,
                          record)


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="source folder")
    parser.add_argument("--pairs", dest="pairs_csv", required=True, metavar="CSV",
                        help="CSV file with columns pd,pdfs[,subject]")


@preparer("fastmri", "fastMRI HDF5 files below SRC, paired by a CSV with columns pd,pdfs[,subject]", arguments,
          inputs=("src", "pairs_csv"), axis=False)
def dataset(src: str | Path, pairs_csv: str | Path) -> Dataset:
    """The PD-FS/PD pairs listed in ``pairs_csv``, files below ``src``."""
    root = check_source_dir(src)
    csv_path = Path(pairs_csv)
    rows = read_csv(csv_path, ("pd", "pdfs"), ("subject",))
    subjects = []
    for row in rows:
        target = resolve(row["pdfs"], root, csv_path)
        sid = row.get("subject") or target.name.split(".")[0]
        subjects.append(Subject(check_sid(sid, csv_path), target, resolve(row["pd"], root, csv_path)))
    parameters = {"csv": {"path": str(csv_path.resolve()), "sha256": sha256_file(csv_path)}}
    return Dataset("fastmri", root, TARGET, REFERENCE, unique_subjects(subjects, csv_path), load_subject,
                   parameters=parameters)
