"""BraTS 2020/2021 folders: ``BraTS20_Training_001/BraTS20_Training_001_t2.nii.gz`` (2020) or
``BraTS2021_00000/BraTS2021_00000_t2.nii.gz`` (2021), one folder per subject anywhere below the source folder,
modalities ``t1 t1ce t2 flair`` and the segmentation ``seg`` (absent from validation data).

Labels are stored as 0 background, 1 necrotic/non-enhancing tumour core (BraTS label 1), 2 peritumoral edema
(BraTS 2), 3 enhancing tumour (BraTS 4); any other value in a ``seg`` file is an error. BraTS volumes are
co-registered on one 1 mm grid (240 x 240 x 155), so slices are axial by default.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from medsr.data.prepare.common import Dataset, check_source_dir, choose, contrast_options, found_pairs, \
    group_by_subject, load_nifti_subject, preparer

MODALITIES = ("t1", "t1ce", "t2", "flair")
PATTERN = re.compile(r"^(BraTS\w+?)_(t1|t1ce|t2|flair|seg)\.nii(\.gz)?$")
LABEL_MAP = {0: 0, 1: 1, 2: 2, 4: 3}
LABEL_NAMES = {0: "background", 1: "necrotic and non-enhancing tumour core (NCR/NET, BraTS 1)",
               2: "peritumoral edema (ED, BraTS 2)", 3: "enhancing tumour (ET, BraTS 4)"}


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="source folder")
    contrast_options(parser, "t2", "t1", ": t1, t1ce, t2, flair")


@preparer("brats", "BraTS 2020/2021 subject folders below SRC (seg as labels)", arguments)
def dataset(src: str | Path, target: str = "t2", reference: str = "t1") -> Dataset:
    """The BraTS subjects below ``src`` with both modalities, their ``seg`` as labels when present."""
    root = check_source_dir(src)
    target, reference = choose(target, MODALITIES, "--target"), choose(reference, MODALITIES, "--ref")
    found = group_by_subject(root, "BraTS*", PATTERN, own_folder=True)
    subjects, skipped = found_pairs(found, target, reference, root,
                                    "BraTS subject folders (BraTS.../BraTS..._<modality>.nii.gz)", label="seg")
    parameters = {"skipped": skipped, "label_mapping": {str(k): v for k, v in LABEL_MAP.items()}}
    return Dataset("brats", root, target, reference, subjects, load_nifti_subject, LABEL_NAMES, LABEL_MAP,
                   parameters)
