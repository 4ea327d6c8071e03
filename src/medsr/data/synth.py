"""Domain-randomised training items (``data.dataset: synth``): images drawn from label maps, never from a template.

After SynthSeg (Billot et al., Medical Image Analysis 86, 2023) and SynthSR (Iglesias et al., Science Advances
9, 2023); the image model is :mod:`medsr.data.synth_augment`. :class:`SynthSliceDataset` takes the engine's
:class:`~medsr.data.datasets.SampleSpec` and returns the same item as
:class:`~medsr.data.datasets.SRSliceDataset` (built by the same :func:`~medsr.data.datasets.make_item`, so the
LR input is the k-space downsampling of the generated HR region, cut to the patch), a pure function of the spec:

* geometry: the item's :func:`~medsr.data.datasets.patch_layout` on a field of view of at least
  ``params.region`` HR pixels per axis; only its tiled region is generated;
* label map: with probability ``procedural_fraction`` a procedural body-like map
  (:func:`~medsr.data.synth_augment.procedural_classes`), else the tissue labels of a train-split slice of the
  store (``2k + 1`` adjacent slices) under one random affine + elastic map, each tissue split into sub-classes at
  random thresholds of the store's first T1-like contrast, and (probability ``head_layers``) CSF / skull / scalp
  layers of random width around the brain;
* target and reference rendered independently (their own intensities, texture, blur, bias, gamma, noise), so no
  fixed target-to-reference formula exists; each divided by its robust scale (:func:`medsr.data.store.robust_scale`).

``label`` (when ``use_labels`` and the split has label maps): the store's tissue label of each class (layers and
procedural background: 0; procedural classes: a random tissue per class). :class:`SynthMixture` takes each item from the real dataset with probability
``real_fraction`` (drawn from the spec's seed), else from the generator. Only the ``split`` given (train) is read.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from medsr.data.datasets import SampleSpec, VolumeIndex, make_item, patch_layout, scale_pair
from medsr.data.masks import MaskSpec, on_lr_grid
from medsr.data.store import SliceStore, robust_scale
from medsr.data.synth_augment import add_layers, procedural_classes, render, sampling_grid, smooth_field, split_labels, warp
from medsr.errors import InputError

# Store slices are padded by this many pixels so head layers fit around a brain at the slice edge.
MARGIN = 24
FAR = 1e3
# Widths (source pixels) of the CSF, skull and scalp layers, each U(low, high).
LAYER_WIDTHS = ((0.5, 3.0), (2.0, 7.0), (2.0, 9.0))
SUB_SPLIT_PERCENTILES = (10.0, 90.0)
# Streams of an item's generator: geometry and label map, target, reference, real-or-synthetic choice.
_GEOMETRY, _TARGET, _REF, _MIX = 0, 1, 2, 3


class SynthSliceDataset(VolumeIndex, torch.utils.data.Dataset):
    """Synthetic items over the label maps of ``split`` (see the module docstring).

    ``params``: a :class:`medsr.config.SynthConfig`; ``length``: the number of spec indices (index ``i`` uses
    store slice ``i mod`` the number of slices); ``n_adjacent``, ``patch_size``, ``use_labels`` as for
    :class:`~medsr.data.datasets.SRSliceDataset`; ``mask`` (a :class:`~medsr.data.masks.MaskSpec`) undersamples the
    input as that dataset does, the mask seeded by the item's seed (each generated item is its own acquisition);
    ``phase`` as there.
    """

    def __init__(self, root: str | Path, params: Any, *, split: str = "train", n_adjacent: int = 0,
                 patch_size: int | None = 24, use_labels: bool = True, length: int | None = None,
                 mask: MaskSpec | None = None, phase: str = "none"):
        check_params(params)
        store = SliceStore(root)
        sids = [sid for sid in store.subjects(split) if store.has_labels(sid)]
        if not sids and params.procedural_fraction < 1.0:
            raise InputError(store.root, f"split '{split}' has no label maps for data.synth (set "
                             "procedural_fraction: 1 to use procedural maps only)")
        contrast = "T1" if "T1" in store.contrasts else store.contrasts[0]
        pad = ((0, 0), (MARGIN, MARGIN), (MARGIN, MARGIN))
        self.labels = [np.pad(store.volume(sid, "label"), pad) for sid in sids]
        self.values = [np.pad(store.volume(sid, contrast), pad).astype(np.float32) for sid in sids]
        self.distance = [np.stack([ndimage.distance_transform_edt(s == 0) for s in v]).astype(np.float32)
                         for v in self.labels]
        self.items = [(n, z) for n, v in enumerate(self.labels) for z in range(v.shape[0])]
        self.n_tissues = max([int(v.max()) + 1 for v in self.labels] + [2])
        self.bounds = _label_bounds(self.labels, self.values, self.n_tissues)
        self.params, self.n_adjacent, self.patch_size = params, n_adjacent, patch_size
        self.use_labels = use_labels and bool(sids)
        self.length = length if length is not None else max(len(self.items), 1)
        self.mask, self.phase = mask, phase
        self.store, self.sids = store, sids

    def __len__(self) -> int:
        return self.length

    @property
    def subjects(self) -> list[str]:
        """The label subjects the items are drawn from (procedural items count as drawn from none)."""
        return list(self.sids)

    def subject_of(self, index: int) -> str:
        """The label subject of spec index ``index`` (``index`` mod the number of store slices)."""
        return self.sids[self.items[index % len(self.items)][0]] if self.items else "procedural"

    def __getitem__(self, spec: SampleSpec) -> dict[str, Any]:
        p, k = self.params, self.n_adjacent
        scale = scale_pair(spec.scale, "scale")
        geometry = np.random.default_rng([spec.seed, _GEOMETRY])
        size = self.patch_size
        fov = (p.region, p.region) if size is None else tuple(max(p.region, math.ceil(size * s)) for s in scale)
        lay = patch_layout(fov, size, scale, geometry)
        shape = (lay["cells"][0] * lay["cell_hr"][0], lay["cells"][1] * lay["cell_hr"][1])
        if not self.items or geometry.random() < p.procedural_fraction:
            classes = procedural_classes((2 * k + 1, *shape), geometry)
            tissue = np.concatenate([[0], geometry.integers(1, self.n_tissues, size=int(classes.max()))])
            key = f"synth-procedural:{spec.index}"
        else:
            n, z = self.items[spec.index % len(self.items)]
            classes, tissue = self._anatomy(n, z, shape, geometry)
            key = f"synth-store{n}:{z}"
        style = {"snr_db": tuple(p.snr_db), "texture": p.texture, "pv_sigma": tuple(p.pv_sigma), "bias": p.bias,
                 "gamma_std": p.gamma_std, "zero_background": p.zero_background, "hr_blur": p.hr_blur}
        stack = render(classes, np.random.default_rng([spec.seed, _TARGET]), **style)
        norm = robust_scale(stack)
        region = {"stack": stack / np.float32(norm)}
        if spec.use_ref:
            ref = render(classes[k : k + 1], np.random.default_rng([spec.seed, _REF]), **style)[0]
            region["ref"] = ref / np.float32(robust_scale(ref))
        if self.use_labels:
            region["label"] = tissue[classes[k]]
        mask = None
        if self.mask is not None:
            drawn = self.mask.draw(lay["cell_hr"], lay["cell_lr"], spec.seed)
            mask = on_lr_grid(drawn, self.mask.grid, lay["cell_lr"])
        return make_item(region, lay, spec, norm, key, mask, self.phase)

    def _anatomy(self, n: int, z: int, shape: tuple[int, int],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Class map ``[2k + 1, H, W]`` and class-to-tissue table from slices around ``z`` of subject ``n``."""
        p, labels = self.params, self.labels[n]
        zs = np.clip(np.arange(z - self.n_adjacent, z + self.n_adjacent + 1), 0, labels.shape[0] - 1)
        brain = np.argwhere(labels[z] > 0)
        lo, hi = (brain.min(0), brain.max(0)) if brain.size else ((0, 0), np.array(labels.shape[1:]) - 1)
        centre = (rng.uniform(lo[0], hi[0]), rng.uniform(lo[1], hi[1]))
        grid = sampling_grid(shape, centre, rng, rotation_deg=p.rotation_deg, zoom=tuple(p.zoom), shear=p.shear,
                             elastic_px=p.elastic_px)
        tissue = warp(labels[zs], grid, order=0, outside=0)
        classes, parent = split_labels(tissue, warp(self.values[n][zs], grid, order=1, outside=0.0), self.bounds, rng)
        if rng.random() < p.head_layers:
            distance = warp(self.distance[n][zs], grid, order=1, outside=FAR)
            distance += rng.uniform(0.0, 2.0) * smooth_field(shape, 6, rng)
            widths = [rng.uniform(a, b) for a, b in LAYER_WIDTHS]
            classes = add_layers(classes, distance, widths, first=len(parent))
            parent = np.concatenate([parent, np.zeros(len(widths), dtype=np.int64)])
        return classes, parent


class SynthMixture(torch.utils.data.Dataset):
    """Item ``spec`` from ``real`` with probability ``real_fraction`` (drawn from ``spec.seed``), else from
    ``synth``; as many indices as ``real`` (give ``synth`` the same length)."""

    def __init__(self, real: Any, synth: SynthSliceDataset, real_fraction: float):
        self.real, self.synth, self.real_fraction = real, synth, real_fraction

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, spec: SampleSpec) -> dict[str, Any]:
        if np.random.default_rng([spec.seed, _MIX]).random() < self.real_fraction:
            return self.real[spec]
        return self.synth[spec]


def check_params(params: Any) -> None:
    """Reject out-of-range ``data.synth`` values with an :class:`InputError` naming the key."""
    def bad(key: str, message: str) -> InputError:
        return InputError(f"data.synth.{key}", message)

    for key in ("real_fraction", "procedural_fraction", "head_layers", "zero_background", "hr_blur"):
        if not 0.0 <= getattr(params, key) <= 1.0:
            raise bad(key, f"must be a probability in [0, 1], got {getattr(params, key)}")
    for key in ("snr_db", "zoom", "pv_sigma"):
        pair = list(getattr(params, key))
        if len(pair) != 2 or pair[0] > pair[1]:
            raise bad(key, f"expected [low, high] with low <= high, got {pair}")
    if params.zoom[0] <= 0 or params.pv_sigma[0] < 0:
        raise bad("zoom" if params.zoom[0] <= 0 else "pv_sigma", "must be positive")
    for key in ("rotation_deg", "shear", "elastic_px", "bias", "gamma_std", "texture"):
        if getattr(params, key) < 0:
            raise bad(key, f"must be non-negative, got {getattr(params, key)}")
    if params.region < 1:
        raise bad("region", f"must be a positive number of pixels, got {params.region}")


def _label_bounds(labels: list[np.ndarray], values: list[np.ndarray], n: int) -> np.ndarray:
    """Per label, the SUB_SPLIT_PERCENTILES of the values inside it (where sub-class thresholds are drawn)."""
    bounds = np.zeros((n, 2), dtype=np.float64)
    for label in range(1, n):
        inside = np.concatenate([v[lab == label] for lab, v in zip(labels, values)] + [np.zeros(0)])
        if inside.size:
            bounds[label] = np.percentile(inside, SUB_SPLIT_PERCENTILES)
    return bounds
