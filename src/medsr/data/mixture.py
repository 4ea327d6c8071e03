"""Training on several (target, reference) contrast pairs at once: one dataset per pair, addressed as one.

Used for models that serve whichever contrast a user brings (the shipped ``sakg`` weights: every ordered pair of
T1/T2/PD, plus no reference through the curriculum's reference dropout). A sample spec's index runs over the
pairs' items one after the other, so the engine's deterministic sampler and resume work unchanged.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any, Sequence

import torch

from medsr.data.datasets import VolumeIndex
from medsr.errors import InputError


def parse_pair(text: str) -> tuple[str, str]:
    """``"T2:T1"`` -> ``("T2", "T1")`` (target, reference)."""
    parts = [p.strip() for p in str(text).split(":")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise InputError("data.pairs", f"expected TARGET:REF with two different contrasts, got {text!r}")
    return parts[0], parts[1]


class PairMixture(VolumeIndex, torch.utils.data.Dataset):
    """Concatenation of per-pair :class:`~medsr.data.datasets.SRSliceDataset`s taking ``SampleSpec`` indices."""

    def __init__(self, datasets: Sequence[Any]):
        if not datasets:
            raise ValueError("need at least one dataset")
        self.datasets = list(datasets)
        self.starts = [0]
        for d in self.datasets:
            self.starts.append(self.starts[-1] + len(d))
        self.items = [item for d in self.datasets for item in d.items]
        self.store = self.datasets[0].store

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, spec: Any) -> dict[str, Any]:
        if not 0 <= spec.index < len(self):
            raise IndexError(f"index {spec.index} out of range for {len(self)} items")
        which = bisect.bisect_right(self.starts, spec.index) - 1
        return self.datasets[which][dataclasses.replace(spec, index=spec.index - self.starts[which])]
