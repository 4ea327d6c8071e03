"""Training datasets over a slice store: LR made on the fly in k-space, deterministic per sample spec.

The contract (docs/architecture.md, "Training samples"): :class:`ScaleBatchSampler` yields, per training step,
a list of :class:`SampleSpec`; a ``DataLoader(dataset, batch_sampler=sampler)`` hands each spec to
:meth:`SRSliceDataset.__getitem__`, which returns

``lr [S, h, w]``, ``hr [1, H, W]``, ``ref [1, hr, wr]`` (only when ``use_ref``), ``label [H, W]`` int64 (when the
store has labels), ``scale [2]`` (actual ``H / h``, ``W / w``), ``ref_scale [2]`` (actual HR size / reference
size: ``[1, 1]`` for an HR reference, ``[0, 0]`` when there is no reference), ``norm`` (float), ``key``
(``"sid:z"``), and with a ``mask``: ``mask [w]`` bool (``[h, w]`` for a 2-D mask file; the k-space samples the LR
input keeps, on its grid, centred), ``acceleration`` (float, the effective R of that mask), ``lr_clean [1, h, w]``
(the fully sampled LR centre slice) and ``kspace [h, w]`` complex64 (its measured samples; ``lr`` is the magnitude
of their inverse FFT). With ``phase="smooth-random"`` the HR stack is multiplied by a smooth random phase
(:func:`medsr.kspace.smooth_random_phase`, seeded by the item key) before it is sampled, so the LR input is the
magnitude of a complex acquisition and a mask's nominal acceleration is the task's (no Hermitian redundancy).
``slices="t2net"`` keeps T2Net's slice subset (:data:`SLICE_SUBSETS`).

Every random choice of an item (flips/rot90, patch position) comes from ``spec.seed``; every choice of a batch
(items, scale, reference scale, reference dropout, item seeds) is a pure function of ``(seed, step)``, so items
do not depend on the worker that builds them and a run resumed at step t replays the same batches.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from medsr.data.masks import MaskSpec, effective_acceleration, on_lr_grid
from medsr.data.store import SliceStore
from medsr.errors import InputError
from medsr.kspace import (PHASES, check_scale, downsample, fft2c, lr_shape, seed_from_name, smooth_random_phase,
                          undersample)
from medsr.scales import REF_MODES, Curriculum, Scale

_PERMUTATION, _STEP = 0, 1


@dataclass(frozen=True)
class SampleSpec:
    """Address of one training or evaluation sample.

    ``scale``: target ``(sy, sx)``; ``ref_scale``: ``(ry, rx)`` of an LR reference, ``None`` for an HR
    reference on the target's grid; ``use_ref``: whether the item carries a reference; ``seed``: drives the
    item's augmentation and patch position.
    """

    index: int
    scale: Scale
    ref_scale: Scale | None = None
    use_ref: bool = False
    seed: int = 0


def augment_arrays(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Apply one random flip-y / flip-x / rot90 (drawn once from ``rng``) to the last two axes of every array."""
    flip_y, flip_x, turns = bool(rng.integers(2)), bool(rng.integers(2)), int(rng.integers(4))

    def apply(a: np.ndarray) -> np.ndarray:
        if flip_y:
            a = a[..., ::-1, :]
        if flip_x:
            a = a[..., :, ::-1]
        return np.ascontiguousarray(np.rot90(a, turns, axes=(-2, -1)))

    return [apply(a) for a in arrays]


SLICE_SUBSETS: dict[str, tuple[int, ...] | None] = {
    "all": None,
    "t2net": (20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100, 105, 110, 115, 119),
}
"""Slice indices read per volume: every slice, or the 21 slices T2Net's IXI loader takes from each volume
(``fastmri/mri_ixi_t2net.py`` of its repository; volumes with fewer slices keep those they have)."""


def degrade_cell(region: np.ndarray, cells: tuple[int, int], lr_cell: tuple[int, int],
                 cell: tuple[int, int], magnitude: bool = True) -> np.ndarray:
    """Downsample an HR ``region`` tiled by ``cells`` (rows, cols) to ``cells * lr_cell`` in k-space, and return
    the LR tile ``cell`` (complex unless ``magnitude``): it covers exactly the field of view of the matching HR
    tile (pixel-centre geometry)."""
    size = (cells[0] * lr_cell[0], cells[1] * lr_cell[1])
    dtype = np.complex64 if np.iscomplexobj(region) else np.float32
    return hr_cell(downsample(np.ascontiguousarray(region, dtype=dtype), size=size, magnitude=magnitude),
                   lr_cell, cell)


def hr_cell(region: np.ndarray, cell_size: tuple[int, int], cell: tuple[int, int]) -> np.ndarray:
    (cy, cx), (py, px) = cell, cell_size
    return region[..., cy * py : (cy + 1) * py, cx * px : (cx + 1) * px]


class VolumeIndex:
    """What callers may ask a slice dataset about its volumes, instead of reading its ``items`` or ``store``: the
    subjects in order, the subject of an item, a subject's in-plane slice shape and the store's label names."""

    items: list[tuple[str, int]]
    store: SliceStore

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(sid for sid, _ in self.items))

    def subject_of(self, index: int) -> str:
        return self.items[index][0]

    def slice_shape(self, sid: str) -> tuple[int, int]:
        return tuple(self.store.shape(sid)[-2:])

    @property
    def label_names(self) -> dict[str, str]:
        """``{"1": "CSF", ...}`` (keys are label values as strings); empty without labels."""
        return self.store.manifest.get("labels") or {}


class SRSliceDataset(VolumeIndex, torch.utils.data.Dataset):
    """All (subject, z) of one split; items built from a :class:`SampleSpec` (see the module docstring).

    ``target``/``ref``: contrast names; ``n_adjacent`` = k gives ``S = 2k + 1`` input slices (edges replicate the
    first/last slice); ``patch_size``: LR patch side p (``None`` for whole slices); ``augment``: flips/rot90
    applied to the HR target stack, reference and labels alike before any degradation.

    Patches: the HR cell is ``P = round(p * s)`` per axis; an HR region of ``m * P`` (largest m that fits, per
    axis, at a random offset) is downsampled in k-space to exactly ``m * p`` and one of its cells is taken, so
    the HR and LR cells cover the same field of view and the scale is exactly ``P / p``. An LR reference is
    made the same way from the same region and cell at its own scale.

    ``mask`` (:class:`~medsr.data.masks.MaskSpec`): undersamples the LR input (not the reference) on the LR cell's
    grid (``grid="lr"``) or with a mask drawn over the HR cell's width whose LR band is kept (``grid="hr"``);
    seeded by the subject id, so every slice and patch of a subject shares one acquisition's mask.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        target: str,
        ref: str | None = None,
        n_adjacent: int = 0,
        patch_size: int | None = None,
        augment: bool = False,
        use_labels: bool = True,
        mask: MaskSpec | None = None,
        phase: str = "none",
        slices: str = "all",
    ):
        self.store = SliceStore(root)
        self.store.check_contrast(target)
        if ref is not None:
            self.store.check_contrast(ref)
        if not isinstance(n_adjacent, int) or n_adjacent < 0:
            raise InputError("n_adjacent", f"must be a non-negative integer, got {n_adjacent!r}")
        if patch_size is not None and (not isinstance(patch_size, int) or patch_size < 1):
            raise InputError("patch_size", f"must be a positive integer or None, got {patch_size!r}")
        self.split, self.target, self.ref = split, target, ref
        self.n_adjacent, self.patch_size, self.augment, self.use_labels = n_adjacent, patch_size, augment, use_labels
        if phase not in PHASES:
            raise InputError("data.phase", f"must be one of {', '.join(PHASES)}, got {phase!r}")
        if slices not in SLICE_SUBSETS:
            raise InputError("data.slices", f"must be one of {', '.join(SLICE_SUBSETS)}, got {slices!r}")
        self.mask, self.phase = mask, phase
        subset = SLICE_SUBSETS[slices]
        self.items = [(sid, z) for sid in self.store.subjects(split) for z in range(self.store.num_slices(sid))
                      if subset is None or z in subset]
        if not self.items:
            raise InputError(self.store.root, f"split '{split}' has no slices")

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, sid: str, z: int, spec: SampleSpec) -> dict[str, np.ndarray]:
        """HR arrays of one item: the adjacent-slice stack, and the reference and label slices when wanted."""
        depth, k = self.store.num_slices(sid), self.n_adjacent
        lo, hi = max(z - k, 0), min(z + k + 1, depth)
        block = self.store.slices(sid, self.target, slice(lo, hi))
        arrays = {"stack": block[np.clip(np.arange(z - k, z + k + 1), 0, depth - 1) - lo]}
        if spec.use_ref:
            if self.ref is None:
                raise ValueError("spec asks for a reference but the dataset has no ref contrast")
            arrays["ref"] = self.store.slices(sid, self.ref, z)
        if self.use_labels and self.store.has_labels(sid):
            arrays["label"] = self.store.slices(sid, "label", z)
        return arrays

    def __getitem__(self, spec: SampleSpec) -> dict[str, Any]:
        sid, z = self.items[spec.index]
        scale = scale_pair(spec.scale, "scale")
        rng = np.random.default_rng(spec.seed)
        arrays = self._read(sid, z, spec)
        if self.augment:
            arrays = dict(zip(arrays, augment_arrays(list(arrays.values()), rng)))
        lay = patch_layout(arrays["stack"].shape[-2:], self.patch_size, scale, rng)
        (oy, ox), (cy, cx) = lay["offset"], lay["cells"]
        window = (slice(oy, oy + cy * lay["cell_hr"][0]), slice(ox, ox + cx * lay["cell_hr"][1]))
        region = {name: a[(..., *window)] for name, a in arrays.items()}
        mask = None
        if self.mask is not None:
            drawn = self.mask.draw(lay["cell_hr"], lay["cell_lr"], seed_from_name(sid))
            mask = on_lr_grid(drawn, self.mask.grid, lay["cell_lr"])
        return make_item(region, lay, spec, self.store.norm(sid, self.target), f"{sid}:{z}", mask, self.phase)


def patch_layout(shape: tuple[int, int], patch_size: int | None, scale: Scale,
                 rng: np.random.Generator) -> dict[str, Any]:
    """HR cell size, tiling, region offset and chosen cell of one item on an HR slice of ``shape`` (see
    :class:`SRSliceDataset`; ``patch_size=None``: the whole slice is one cell)."""
    if patch_size is None:
        return {"cell_hr": tuple(shape), "cell_lr": lr_shape(shape, scale),
                "cells": (1, 1), "offset": (0, 0), "cell": (0, 0)}
    p = patch_size
    cell_hr = (max(1, round(p * scale[0])), max(1, round(p * scale[1])))
    if cell_hr[0] > shape[0] or cell_hr[1] > shape[1]:
        raise InputError("patch_size", f"an HR patch of {cell_hr[0]}x{cell_hr[1]} (LR {p} at scale "
                         f"{scale[0]:g}x{scale[1]:g}) does not fit a {shape[0]}x{shape[1]} slice")
    cells = (shape[0] // cell_hr[0], shape[1] // cell_hr[1])
    offset = tuple(int(rng.integers(n - m * c + 1)) for n, m, c in zip(shape, cells, cell_hr))
    cell = (int(rng.integers(cells[0])), int(rng.integers(cells[1])))
    return {"cell_hr": cell_hr, "cell_lr": (p, p), "cells": cells, "offset": offset, "cell": cell}


def make_item(region: dict[str, np.ndarray], lay: dict[str, Any], spec: SampleSpec, norm: float,
              key: str, mask: np.ndarray | None = None, phase: str = "none") -> dict[str, Any]:
    """The item of the module docstring from the HR ``region`` arrays of a :func:`patch_layout`: ``stack``
    ``[S, ., .]`` (the centre slice is the target), ``ref`` when ``spec.use_ref``, optional ``label``. The LR
    input (and an LR reference) are the k-space downsampling of the whole region, cut to the chosen cell; an
    LR-grid ``mask`` then undersamples the input cell's own spectrum (crop, then mask), and the item also keeps
    the clean LR centre slice and its measured k-space. ``phase`` (:data:`medsr.kspace.PHASES`) is put on the HR
    stack before it is sampled (seeded by ``key``)."""
    stack = region["stack"]
    if phase != "none":
        stack = stack * np.exp(1j * smooth_random_phase(stack.shape[-2:], seed_from_name(key)))
    lr = degrade_cell(stack, lay["cells"], lay["cell_lr"], lay["cell"], magnitude=mask is None)
    if mask is not None:
        clean, measured = lr, undersample(lr, mask, magnitude=False)
        lr = np.abs(measured)
    hr = hr_cell(region["stack"][region["stack"].shape[0] // 2], lay["cell_hr"], lay["cell"])
    item: dict[str, Any] = {
        "lr": torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)),
        "hr": torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32))[None],
        "scale": torch.tensor([hr.shape[0] / lr.shape[-2], hr.shape[1] / lr.shape[-1]], dtype=torch.float32),
        "ref_scale": torch.zeros(2, dtype=torch.float32),
        "norm": norm,
        "key": key,
    }
    if spec.use_ref:
        ref = hr_cell(region["ref"], lay["cell_hr"], lay["cell"])
        if spec.ref_scale is not None:
            ref_lr = lr_shape(lay["cell_hr"], scale_pair(spec.ref_scale, "ref_scale"))
            ref = degrade_cell(region["ref"], lay["cells"], ref_lr, lay["cell"])
        item["ref"] = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32))[None]
        item["ref_scale"] = torch.tensor([hr.shape[0] / ref.shape[0], hr.shape[1] / ref.shape[1]],
                                         dtype=torch.float32)
    if mask is not None:
        centre = lr.shape[0] // 2
        item["lr_clean"] = torch.from_numpy(np.abs(clean[centre : centre + 1]).astype(np.float32))
        item["kspace"] = torch.from_numpy(np.asarray(fft2c(measured[centre]), dtype=np.complex64))
        item["mask"] = torch.from_numpy(np.array(mask, dtype=bool))
        item["acceleration"] = effective_acceleration(mask)
    if "label" in region:
        item["label"] = torch.from_numpy(hr_cell(region["label"], lay["cell_hr"], lay["cell"]).astype(np.int64))
    return item


@dataclass(frozen=True)
class ItemSpec:
    """Address of one sample of a task without degradation (e.g. segmentation): item ``index`` and the ``seed``
    of its augmentation and patch position."""

    index: int
    seed: int = 0


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields one list of specs per training step, a pure function of ``(seed, step)``: :class:`ItemSpec` here,
    :class:`SampleSpec` in :class:`ScaleBatchSampler`.

    Items come from an endless stream of per-epoch permutations (``default_rng([seed, 0, epoch])``); step t
    takes positions ``[t G, (t + 1) G)`` of it, with ``G = batch_size * world_size``, and rank r keeps the
    r-th of the ``world_size`` disjoint shards. Per-item seeds are drawn from ``default_rng([seed, 1, t])``.
    ``num_steps``: how many steps to yield from ``start_step`` (endless when ``None``).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        start_step: int = 0,
        num_steps: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        if num_items < 1 or batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler sizes: num_items={num_items}, batch_size={batch_size}, "
                             f"rank={rank}, world_size={world_size}")
        if start_step < 0 or (num_steps is not None and num_steps < 0):
            raise ValueError(f"bad step range: start_step={start_step}, num_steps={num_steps}")
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start_step, self.num_steps, self.rank, self.world_size = start_step, num_steps, rank, world_size
        self._epoch: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, np.random.default_rng([self.seed, _PERMUTATION, epoch]).permutation(self.num_items))
        return self._epoch[1]

    def indices_at(self, step: int) -> list[int]:
        """This rank's item indices of training step ``step``."""
        first = (step * self.world_size + self.rank) * self.batch_size
        return [int(self._permutation(p // self.num_items)[p % self.num_items])
                for p in range(first, first + self.batch_size)]

    def item_seeds(self, rng: np.random.Generator) -> list[int]:
        """This rank's per-item seeds, drawn for the whole global batch from the step's ``rng``."""
        seeds = rng.integers(2**63 - 1, size=self.batch_size * self.world_size)
        return [int(s) for s in seeds[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]]

    def batch_at(self, step: int) -> list[Any]:
        """This rank's specs of training step ``step``."""
        seeds = self.item_seeds(np.random.default_rng([self.seed, _STEP, step]))
        return [ItemSpec(index=i, seed=s) for i, s in zip(self.indices_at(step), seeds)]

    def __iter__(self) -> Iterator[list[Any]]:
        step = self.start_step
        while self.num_steps is None or step < self.start_step + self.num_steps:
            yield self.batch_at(step)
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError(f"an endless {type(self).__name__} has no length (give num_steps)")
        return self.num_steps


class ScaleBatchSampler(StepBatchSampler):
    """:class:`StepBatchSampler` for super-resolution: each step's stage, scale, reference use and reference
    scale (then the per-item seeds) are drawn from ``default_rng([seed, 1, t])``; specs are :class:`SampleSpec`."""

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        curriculum: Curriculum,
        seed: int,
        start_step: int = 0,
        num_steps: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(num_items, batch_size, seed, start_step, num_steps, rank, world_size)
        self.curriculum = curriculum

    def batch_at(self, step: int) -> list[SampleSpec]:
        """This rank's specs of training step ``step``."""
        rng = np.random.default_rng([self.seed, _STEP, step])
        stage = self.curriculum.stage_at(step)
        scale = stage.scale.sample(rng)
        keep_ref = bool(rng.random() >= stage.ref_dropout)
        ref_scale = stage.ref_scale.sample(rng) if stage.ref_scale is not None else None
        use_ref = stage.ref != "none" and keep_ref
        return [SampleSpec(index=i, scale=scale, ref_scale=ref_scale, use_ref=use_ref, seed=s)
                for i, s in zip(self.indices_at(step), self.item_seeds(rng))]


def scale_pair(scale: float | Sequence[float], name: str) -> Scale:
    values = scale if isinstance(scale, (list, tuple)) else (scale, scale)
    if len(values) != 2:
        raise ValueError(f"{name}: expected a number or (sy, sx), got {scale!r}")
    return check_scale(values[0], name), check_scale(values[1], name)


def eval_specs(dataset: SRSliceDataset, scale: float | Sequence[float], ref_mode: str,
               ref_scale: float | Sequence[float] | None = None) -> list[SampleSpec]:
    """One spec per item of ``dataset`` at a fixed scale, for validation and test (seed = item index).

    ``ref_mode``: ``"hr"``, ``"lr"`` (needs ``ref_scale``) or ``"none"``. Build the dataset with
    ``augment=False`` for evaluation.
    """
    if ref_mode not in REF_MODES:
        raise ValueError(f"ref_mode: expected one of {', '.join(REF_MODES)}, got {ref_mode!r}")
    if (ref_mode == "lr") != (ref_scale is not None):
        raise ValueError("ref_scale: required when ref_mode is 'lr', not allowed otherwise")
    target = scale_pair(scale, "scale")
    ref = scale_pair(ref_scale, "ref_scale") if ref_scale is not None else None
    return [SampleSpec(index=i, scale=target, ref_scale=ref, use_ref=ref_mode != "none", seed=i)
            for i in range(len(dataset))]


def worker_init_fn(worker_id: int) -> None:
    """Seed ``random``, numpy and torch in a DataLoader worker from torch's worker seed and the process rank."""
    info = torch.utils.data.get_worker_info()
    base = info.seed if info is not None else torch.initial_seed()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
    else:
        rank = int(os.environ.get("RANK", 0))
    state = np.random.SeedSequence([base % 2**63, rank, worker_id])
    seed = int(state.generate_state(1, dtype=np.uint64)[0])
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
