"""IXI (https://brain-development.org/ixi-dataset/): files ``IXI<id>-<site>-<n>-<T1|T2|PD>.nii.gz``, found anywhere
below the source folder (e.g. the extracted ``IXI-T2/`` and ``IXI-PD/`` archives side by side).

T2 and PD of a subject come from one dual-echo acquisition and share a grid; T1 does not (sagittal, other
resolution), so a T1 reference is resampled onto the target grid through the affines (recorded per subject).
Subjects lacking the target or the reference are left out and listed in the manifest's ``skipped``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from medsr.data.prepare.common import Dataset, check_source_dir, choose, contrast_options, found_pairs, \
    group_by_subject, load_nifti_subject, preparer

CONTRASTS = ("T1", "T2", "PD")
PATTERN = re.compile(r"^(IXI\d+-[A-Za-z]+-\d+)-(T1|T2|PD)\.nii(\.gz)?$")


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="source folder")
    contrast_options(parser, "T2", "PD", ": T1, T2 or PD")


@preparer("ixi", "IXI NIfTI files (IXI<id>-<site>-<n>-<T1|T2|PD>.nii.gz) below SRC", arguments)
def dataset(src: str | Path, target: str = "T2", reference: str = "PD") -> Dataset:
    """The IXI subjects below ``src`` that have both the ``target`` and the ``reference`` contrast."""
    root = check_source_dir(src)
    target, reference = choose(target, CONTRASTS, "--target"), choose(reference, CONTRASTS, "--ref")
    found = group_by_subject(root, "IXI*", PATTERN)
    subjects, skipped = found_pairs(found, target, reference, root, "IXI files (IXI<id>-<site>-<n>-<T1|T2|PD>.nii.gz)")
    return Dataset("ixi", root, target, reference, subjects, load_nifti_subject, parameters={"skipped": skipped})
