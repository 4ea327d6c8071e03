"""IXI (https://brain-development.org/ixi-dataset/): files ``IXI<id>-<site>-<n>-<T1|T2|PD>.nii.gz``, found anywhere
below the source folder (e.g. the extracted ``IXI-T2/`` and ``IXI-PD/`` archives side by side).

T2 and PD of a subject come from one dual-echo acquisition and share a grid; T1 does not (sagittal, other
resolution), so a T1 reference is resampled onto the target grid through the affines (recorded per subject).
Subjects lacking the target or the reference are left out and listed in the manifest's ``skipped``.
"""

from __future__ import annotations

import re
from pathlib import Path

from medsr.data.prepare.common import Dataset, check_source_dir, choose, found_pairs, load_nifti_subject, preparer
from medsr.errors import require

CONTRASTS = ("T1", "T2", "PD")
PATTERN = re.compile(r"^(IXI\d+-[A-Za-z]+-\d+)-(T1|T2|PD)\.nii(\.gz)?$")


def find_files(src: Path) -> dict[str, dict[str, Path]]:
    """``{subject id: {contrast: path}}`` of the IXI files below ``src``; a duplicate is an error."""
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(src.rglob("IXI*")):
        match = PATTERN.match(path.name)
        if not match or not path.is_file():
            continue
        sid, contrast = match.group(1), match.group(2)
        other = found.setdefault(sid, {}).get(contrast)
        require(other is None, path, f"duplicate {contrast} image of {sid} (also {other})")
        found[sid][contrast] = path
    return found


@preparer("ixi")
def dataset(src: str | Path, target: str = "T2", reference: str = "PD") -> Dataset:
    """The IXI subjects below ``src`` that have both the ``target`` and the ``reference`` contrast."""
    root = check_source_dir(src)
    target, reference = choose(target, CONTRASTS, "--target"), choose(reference, CONTRASTS, "--ref")
    found = find_files(root)
    subjects, skipped = found_pairs(found, target, reference, root, "IXI files (IXI<id>-<site>-<n>-<T1|T2|PD>.nii.gz)")
    return Dataset("ixi", root, target, reference, subjects, load_nifti_subject, parameters={"skipped": skipped})
