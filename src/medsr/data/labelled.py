"""Image/label slices of a store for ``task: segmentation``: no degradation, no k-space round trip.

An :class:`~medsr.data.datasets.ItemSpec` addresses one ``(subject, z)``; its seed drives the flips/rot90 and
the patch position, so items are a pure function of the spec (resume and DDP replay the same batches as for SR).
Items are ``image [1, H, W]`` (float32, normalised as stored), ``label [H, W]`` (int64), ``norm`` and ``key``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from medsr.data.datasets import ItemSpec, VolumeIndex, augment_arrays
from medsr.data.store import SliceStore
from medsr.errors import InputError


class LabelledSliceDataset(VolumeIndex, torch.utils.data.Dataset):
    """All (subject, z) of one split with the ``contrast`` image and the label map; ``patch_size`` (None: whole
    slices) crops a square patch at a seeded position, ``augment`` applies the same flip/rot90 to both."""

    def __init__(self, root: str | Path, split: str, contrast: str, patch_size: int | None = None,
                 augment: bool = False):
        self.store = SliceStore(root)
        self.store.check_contrast(contrast)
        if patch_size is not None and (not isinstance(patch_size, int) or patch_size < 1):
            raise InputError("patch_size", f"must be a positive integer or None, got {patch_size!r}")
        subjects = self.store.subjects(split)
        unlabelled = [sid for sid in subjects if not self.store.has_labels(sid)]
        if unlabelled:
            raise InputError(self.store.root, f"subject {unlabelled[0]} of split '{split}' has no labels")
        self.contrast, self.patch_size, self.augment = contrast, patch_size, augment
        self.items = [(sid, z) for sid in subjects for z in range(self.store.num_slices(sid))]
        if not self.items:
            raise InputError(self.store.root, f"split '{split}' has no slices")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, spec: ItemSpec) -> dict[str, Any]:
        sid, z = self.items[spec.index]
        rng = np.random.default_rng(spec.seed)
        image, label = self.store.slices(sid, self.contrast, z), self.store.slices(sid, "label", z)
        if self.augment:
            image, label = augment_arrays([image, label], rng)
        if self.patch_size is not None:
            p = self.patch_size
            if p > image.shape[0] or p > image.shape[1]:
                raise InputError("patch_size", f"a {p}x{p} patch does not fit a {image.shape[0]}x{image.shape[1]} "
                                 "slice")
            y, x = int(rng.integers(image.shape[0] - p + 1)), int(rng.integers(image.shape[1] - p + 1))
            image, label = image[y : y + p, x : x + p], label[y : y + p, x : x + p]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None],
            "label": torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)),
            "norm": self.store.norm(sid, self.contrast),
            "key": f"{sid}:{z}",
        }

    def volumes(self, subjects: set[str] | None = None) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """``(subject, image [Z, 1, H, W], label [Z, H, W])`` for each whole volume (only ``subjects`` when
        given), one subject at a time."""
        for sid in dict.fromkeys(sid for sid, _ in self.items):
            if subjects is None or sid in subjects:
                image = torch.from_numpy(np.asarray(self.store.volume(sid, self.contrast), dtype=np.float32))
                label = torch.from_numpy(np.asarray(self.store.volume(sid, "label")).astype(np.int64))
                yield sid, image[:, None], label
