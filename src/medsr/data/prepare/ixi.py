"""IXI (https://brain-development.org/ixi-dataset/): files ``IXI<id>-<site>-<n>-<T1|T2|PD>.nii.gz``, found anywhere
below the source folder (e.g. the extracted ``IXI-T2/`` and ``IXI-PD/`` archives side by side).

T2 and PD of a subject come from one dual-echo acquisition and share a grid; T1 does not (sagittal, other
resolution), so a T1 reference is resampled onto the target grid through the affines (recorded per subject).
Subjects lacking the target or the reference are left out and listed in the manifest's ``skipped``.
"""

from __future__ import annotations

import re
from pathlib import Path

from medsr.data.prepare.common import Dataset, Subject, check_source_dir, load_nifti_subject
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


def _contrast(value: str, flag: str) -> str:
    name = str(value).upper()
    require(name in CONTRASTS, flag, f"must be one of {', '.join(CONTRASTS)}, got {value!r}")
    return name


def dataset(src: str | Path, target: str = "T2", reference: str = "PD") -> Dataset:
    """The IXI subjects below ``src`` that have both the ``target`` and the ``reference`` contrast."""
    root = check_source_dir(src)
    target, reference = _contrast(target, "--target"), _contrast(reference, "--ref")
    require(target != reference, "--ref", "must differ from --target")
    found = find_files(root)
    require(bool(found), root, "no IXI files (IXI<id>-<site>-<n>-<T1|T2|PD>.nii.gz) found")
    subjects, skipped = [], {}
    for sid, files in sorted(found.items()):
        missing = [c for c in (target, reference) if c not in files]
        if missing:
            skipped[sid] = f"no {' or '.join(missing)} image"
        else:
            subjects.append(Subject(sid, files[target], files[reference]))
    require(bool(subjects), root, f"no IXI subject has both a {target} and a {reference} image")
    return Dataset("ixi", root, target, reference, subjects, load_nifti_subject, parameters={"skipped": skipped})
