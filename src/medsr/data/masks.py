"""Undersampling masks of ``medsr degrade`` and the training datasets: their kind, the grid they are drawn on,
mask files, and the acceleration the data actually get.

Grids
-----
* ``grid="lr"`` (the default): crop the spectrum to the low-resolution grid, then draw and apply the mask on that
  grid. This is T2Net's order (crop 256 -> 128, then its 128-column mask; Feng et al., MICCAI 2021) and that of
  the joint reconstruction + super-resolution literature: the acceleration asked for is the one the model's input
  has, and a data-consistency layer can use the mask as it is.
* ``grid="hr"``: draw the mask over the HR width and apply it before the crop (medsr's only behaviour before the
  option existed). The crop drops the columns outside the LR band, so the LR data keep fewer columns than the
  acceleration suggests: ``random``, R 4, centre 0.08 at x2 keeps 39.9 of 128 LR columns on average (R 3.2).

Whatever the grid, the *effective* acceleration is measured on the mask actually applied, restricted to the LR
grid (:func:`on_lr_grid`): ``size / sampled``. :func:`describe` prints it and :func:`metadata` stores it.

Magnitude images
----------------
The spectrum of a real image is Hermitian, ``K(-k) = conj(K(k))``: an unsampled column whose mirror is sampled is
known all the same, so undersampling a magnitude image asks less than its nominal R (the "implicit data crime" of
Shimron et al., PNAS 2022). :func:`mirror_acceleration` counts those columns (column ``j`` mirrors
``(2 (N // 2) - j) mod N`` with the centre at ``N // 2``); :func:`describe` prints both figures. A smooth random
phase on the image before sampling (:func:`medsr.kspace.smooth_random_phase`, ``--phase smooth-random``,
``data.phase``) breaks the symmetry, so the nominal R is then the task's.

Published masks
---------------
``t2net`` is T2Net's own fixed mask for every slice (Feng et al., MICCAI 2021; the two files of its repository
for 128 and 64 LR columns, shipped in ``medsr/data/published`` with their source and hashes in ``sources.json``);
``t2net-random`` draws masks with the same counts per subject (:class:`medsr.kspace.T2NetMask`).

Mask files (``.npy``, ``.mat`` MATLAB v5 or v7.3, ``.png``; read by :func:`medsr.io.images.read_image`) hold a
column mask (a vector, also as a 1 x W or W x 1 matrix) or a 2-D ``[rows, columns]`` mask applied as it is, in
the centred convention (the k-space centre at index ``N // 2``); zeros are unsampled, one positive level sampled.
A mask must fit its grid, sample something, and sample the k-space centre.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsr import kspace
from medsr.errors import InputError, as_number, require
from medsr.io.images import read_image

KINDS = ("random", "equispaced", "t2net", "t2net-random", "file")
GRIDS = ("lr", "hr")
DEFAULT_GRID = "lr"
DEFAULT_CENTER_FRACTION = 0.08
FLAGS = {"kind": "--mask", "acceleration": "--acceleration", "center_fraction": "--center-fraction",
         "grid": "--mask-grid", "file": "--mask-file"}
CONFIG_KEYS = {"kind": "data.mask.type", **{k: f"data.mask.{k}" for k in ("acceleration", "center_fraction", "grid",
                                                                          "file")}}


@dataclass(frozen=True)
class MaskSpec:
    """How to undersample: ``kind`` (see :data:`KINDS`), ``acceleration`` and ``center_fraction`` (fastMRI-style
    kinds only), the ``grid`` the mask lives on and, for ``kind="file"``, the mask ``file``. ``source`` names the
    setting in error messages (a flag or a config key)."""

    kind: str
    acceleration: float | None = None
    center_fraction: float = DEFAULT_CENTER_FRACTION
    grid: str = DEFAULT_GRID
    file: str | None = None
    source: str = field(default="--mask", compare=False)

    def draw(self, hr_shape: tuple[int, int], lr_shape: tuple[int, int], seed: int) -> np.ndarray:
        """The boolean mask on its own grid (``lr_shape`` or ``hr_shape``, (rows, columns)): ``[columns]``, or
        ``[rows, columns]`` for a 2-D mask file. ``seed`` drives the random kinds."""
        shape = tuple(lr_shape if self.grid == "lr" else hr_shape)
        if self.kind == "file":
            return check_mask(load_mask(self.file), shape, self.file, self.grid)
        if self.kind == "t2net":
            return published_mask("t2net", shape[1], self.source, self.grid)
        if self.kind == "t2net-random":
            try:
                return kspace.T2NetMask.preset(shape[1])(shape[1], seed=seed)
            except ValueError as err:
                raise InputError(self.source, f"t2net-random: {err} ({self.grid.upper()} grid)") from None
        return kspace.MASKS[self.kind](self.acceleration, self.center_fraction)(shape[1], seed=seed)


def parse_mask(kind: object = None, acceleration: object = None, center_fraction: object = None,
               grid: object = None, file: object = None, names: dict[str, str] = FLAGS) -> MaskSpec | None:
    """Check mask settings (strings or numbers, from flags or a config) into a :class:`MaskSpec`, or ``None``
    without a mask; errors name the setting through ``names`` (keys of :data:`FLAGS`)."""
    if file is not None and kind is None:
        kind = "file"
    if kind is None:
        for key, value in (("acceleration", acceleration), ("center_fraction", center_fraction), ("grid", grid)):
            require(value is None, names[key], f"needs {names['kind']}")
        return None
    require(kind in KINDS, names["kind"], f"must be one of {', '.join(KINDS)}, got {kind!r}")
    require((kind == "file") == (file is not None), names["file"],
            "is required with a file mask" if file is None else f"cannot be combined with a {kind} mask")
    if kind in kspace.MASKS:
        require(acceleration is not None, names["acceleration"], f"is required with a {kind} mask")
    else:
        why = "a mask file" if kind == "file" else "T2Net's mask files"
        for key, value in (("acceleration", acceleration), ("center_fraction", center_fraction)):
            require(value is None, names[key], f"does not apply: {why} set the sampled columns")
    accel = as_number(acceleration, names["acceleration"]) if acceleration is not None else None
    require(accel is None or accel >= 1, names["acceleration"], f"must be at least 1, got {acceleration}")
    cf = as_number(center_fraction, names["center_fraction"]) if center_fraction is not None \
        else DEFAULT_CENTER_FRACTION
    require(0 < cf <= 1, names["center_fraction"], f"must be in (0, 1], got {center_fraction}")
    grid = DEFAULT_GRID if grid is None else grid
    require(grid in GRIDS, names["grid"], f"must be lr or hr, got {grid!r}")
    if file is not None:
        load_mask(file)  # a bad file fails before any work
    return MaskSpec(kind, accel, cf, grid, None if file is None else str(file), names["kind"])


PUBLISHED = Path(__file__).parent / "published"


def published_mask(name: str, width: int, source: object = "--mask", grid: str = "lr") -> np.ndarray:
    """The published column mask ``name`` (``t2net``) for a grid of ``width`` columns, as its authors' file holds
    it; an :class:`InputError` naming ``source`` when no published mask has that width."""
    widths = sorted(int(p.stem.rsplit("_", 1)[1]) for p in PUBLISHED.glob(f"{name}_*.npy"))
    require(width in widths, source, f"{name}: published masks exist for {' and '.join(map(str, widths))} "
                                     f"columns; this {grid.upper()} grid has {width}")
    return load_mask(PUBLISHED / f"{name}_{width}.npy")


@functools.lru_cache(maxsize=8)
def load_mask(path: str | Path) -> np.ndarray:
    """A mask file as a read-only boolean array, ``[W]`` (a vector or a 1 x W / W x 1 matrix) or ``[H, W]``."""
    data = read_image(path)
    require(data.dtype.kind in "biuf", path, f"a mask must hold real numbers, not {data.dtype}")
    if data.ndim == 2 and 1 in data.shape:
        data = data.reshape(-1)
    require(data.ndim in (1, 2), path, f"a mask must be 1-D (columns) or 2-D, got shape {data.shape}")
    levels = np.unique(data)
    require(bool(levels.min() >= 0) and int((levels > 0).sum()) <= 1, path,
            f"a mask holds 0 (unsampled) and one positive level (sampled), found {_levels(levels)}")
    mask = data > 0
    mask.setflags(write=False)
    return mask


def _levels(levels: np.ndarray) -> str:
    shown = ", ".join(f"{v:g}" for v in levels[:5])
    return shown + (f" and {len(levels) - 5} more" if len(levels) > 5 else "")


def check_mask(mask: np.ndarray, shape: tuple[int, int], source: object, grid: str) -> np.ndarray:
    """``mask`` if it fits a ``grid`` (lr/hr) of ``shape`` (rows, columns), samples something and samples the
    k-space centre; else an :class:`InputError` naming ``source`` and both sizes."""
    rows, cols = shape
    where = f"the {grid.upper()} grid of {rows}x{cols}"
    if mask.ndim == 1:
        require(mask.shape[0] == cols, source, f"a column mask of {mask.shape[0]} columns does not fit {where} "
                                               f"({cols} columns)")
    else:
        require(mask.shape == (rows, cols), source, f"a {mask.shape[0]}x{mask.shape[1]} mask does not fit {where}")
    require(bool(mask.any()), source, "the mask samples nothing")
    centre = (cols // 2,) if mask.ndim == 1 else (rows // 2, cols // 2)
    require(bool(mask[centre]), source, f"the mask does not sample the k-space centre (index "
                                        f"{', '.join(map(str, centre))}: the centred convention puts it at N // 2)")
    return mask


def on_lr_grid(mask: np.ndarray, grid: str, lr_shape: tuple[int, int]) -> np.ndarray:
    """What the LR data keep of a mask drawn on ``grid``: the mask itself (lr), or its central band (hr)."""
    return mask if grid == "lr" else kspace.crop_mask(mask, lr_shape)


def sampling(mask: np.ndarray) -> tuple[int, int, str]:
    """``(sampled, size, unit)`` of an LR-grid mask: counted in columns for a column mask or a 2-D mask whose rows
    are all equal, else in k-space samples."""
    if mask.ndim == 2 and (mask == mask[:1]).all():
        mask = mask[0]
    unit = "columns" if mask.ndim == 1 else "k-space samples"
    return int(mask.sum()), int(mask.size), unit


def effective_acceleration(mask: np.ndarray) -> float:
    """``size / sampled`` of an LR-grid mask: the acceleration of the data the model sees."""
    sampled, size, _ = sampling(mask)
    return size / sampled


def mirrored(mask: np.ndarray) -> np.ndarray:
    """What a Hermitian spectrum reveals of an LR-grid ``mask`` (``[W]`` or ``[H, W]``): the sampled positions and
    their conjugate mirrors, index ``j`` mirroring ``(2 (N // 2) - j) mod N`` on every axis (centre at ``N // 2``)."""
    m = np.asarray(mask, dtype=bool)
    return m | m[np.ix_(*((2 * (n // 2) - np.arange(n)) % n for n in m.shape))]


def mirror_acceleration(mask: np.ndarray) -> float:
    """``size / known`` of an LR-grid mask on a magnitude image: the sampled samples and those whose conjugate
    mirror is sampled count as known (:func:`mirrored`)."""
    sampled, size, unit = sampling(mask)
    line = mask[0] if unit == "columns" and mask.ndim == 2 else mask
    return size / int(mirrored(line).sum())


def describe(mask: np.ndarray, spec: MaskSpec, hr_shape: tuple[int, int], phase: str = "none") -> str:
    """One line on the LR-grid ``mask``, e.g. ``mask: 38/128 columns sampled on the LR grid (effective R 3.37;
    R 2.51 counting the conjugate mirrors of a magnitude image's Hermitian k-space)``; with a random ``phase``
    on the image the mirrors carry nothing and the line says so."""
    sampled, size, unit = sampling(mask)
    drawn = f"; drawn on the {hr_shape[1]}-column HR grid, then cropped" if spec.grid == "hr" else ""
    mirror = (f"{phase} phase: no Hermitian symmetry" if phase != "none" else
              f"R {mirror_acceleration(mask):.2f} counting the conjugate mirrors of a magnitude image's k-space")
    return f"mask: {sampled}/{size} {unit} sampled on the LR grid (effective R {size / sampled:.2f}; {mirror}{drawn})"


def metadata(mask: np.ndarray, spec: MaskSpec) -> dict[str, Any]:
    """JSON-able record of a mask: its settings and, on the LR grid, the sampled count, size and effective R, and
    the sampled column indices (column masks) or the flat indices of the sampled k-space samples."""
    sampled, size, unit = sampling(mask)
    flat = mask[0] if unit == "columns" and mask.ndim == 2 else mask
    return {"kind": spec.kind, "grid": spec.grid, "acceleration": spec.acceleration,
            "center_fraction": spec.center_fraction if spec.kind in kspace.MASKS else None, "file": spec.file,
            "sampled": sampled, "size": size, "unit": unit, "effective_acceleration": round(size / sampled, 4),
            "mirror_acceleration": round(mirror_acceleration(mask), 4),
            "mask_shape": list(mask.shape), "indices": np.flatnonzero(flat).tolist()}
