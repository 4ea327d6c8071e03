"""Generic pairs: a CSV file with the header ``subject,target,ref[,label]``, one row per subject, paths to 3-D
NIfTI volumes relative to the CSV's folder (or absolute). The label column (integer label maps, values 0..255
stored as they are) may be empty for some subjects. The contrasts are stored under the names given by
``--target``/``--ref`` (default ``target`` and ``ref``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medsr.data.prepare.common import Dataset, Subject, check_sid, contrast_options, load_nifti_subject, \
    read_csv, resolve, preparer, unique_subjects
from medsr.data.store import sha256_file
from medsr.errors import require


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv_path", metavar="csv", help="CSV file: subject,target,ref[,label] (paths relative to "
                        "its folder)")
    contrast_options(parser, "target", "ref", " name")


@preparer("pairs", "NIfTI volumes listed in a CSV with columns subject,target,ref[,label]", arguments,
          inputs=("csv_path",))
def dataset(csv_path: str | Path, target: str = "target", reference: str = "ref") -> Dataset:
    """The subjects listed in ``csv_path``."""
    path = Path(csv_path)
    rows = read_csv(path, ("subject", "target", "ref"), ("label",))
    require(bool(target) and "/" not in target and target not in (reference, "label"), "--target",
            f"invalid contrast name {target!r}")
    require(bool(reference) and "/" not in reference and reference != "label", "--ref",
            f"invalid contrast name {reference!r}")
    root = path.parent
    subjects = unique_subjects(
        (Subject(check_sid(row["subject"], path), resolve(row["target"], root, path), resolve(row["ref"], root, path),
                 resolve(row["label"], root, path) if row.get("label") else None) for row in rows),
        path,
    )
    parameters = {"csv": {"path": str(path.resolve()), "sha256": sha256_file(path)}}
    return Dataset("pairs", root, target, reference, subjects, load_nifti_subject, parameters=parameters)
