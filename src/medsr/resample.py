"""Resampling between voxel grids through their affines (world coordinates), e.g. a reference onto a target grid.

A voxel index ``i`` of a grid with affine ``A`` sits at world position ``A @ [i, 1]``; the source volume covers
index coordinates ``[-0.5, n - 0.5]`` on each axis (voxel centres at integers, as in NIfTI). Target voxels whose
centre falls outside that box get zero; inside it, the value is interpolated with
:func:`scipy.ndimage.map_coordinates` (edge voxels extended by their nearest neighbour up to the box's border).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from scipy import ndimage

_EPS = 1e-6
_CHUNK_VOXELS = 1 << 21


def _grid_transform(affine: np.ndarray, target_affine: np.ndarray) -> np.ndarray:
    """Matrix taking target voxel indices to source voxel indices: ``inv(affine) @ target_affine``."""
    affine = np.asarray(affine, dtype=np.float64)
    target_affine = np.asarray(target_affine, dtype=np.float64)
    if affine.shape != (4, 4) or target_affine.shape != (4, 4):
        raise ValueError(f"affines must be 4x4, got {affine.shape} and {target_affine.shape}")
    return np.linalg.solve(affine, target_affine)


def _source_coordinates(
    transform: np.ndarray, target_shape: Sequence[int]
) -> Iterator[tuple[slice, np.ndarray]]:
    """Source index coordinates ``[3, slab...]`` of the target grid, slab by slab along the first target axis."""
    shape = tuple(int(s) for s in target_shape)
    per_plane = max(1, shape[1] * shape[2])
    step = max(1, _CHUNK_VOXELS // per_plane)
    for start in range(0, shape[0], step):
        rows = slice(start, min(start + step, shape[0]))
        idx = np.indices((rows.stop - rows.start,) + shape[1:], dtype=np.float64)
        idx[0] += rows.start
        coords = np.tensordot(transform[:3, :3], idx, axes=1) + transform[:3, 3].reshape(3, 1, 1, 1)
        yield rows, coords


def _inside(coords: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Boolean map of the coordinates that fall inside a grid of ``shape`` (voxel boxes included)."""
    upper = np.asarray(shape, dtype=np.float64).reshape(3, 1, 1, 1) - 0.5 + _EPS
    return ((coords >= -0.5 - _EPS) & (coords <= upper)).all(axis=0)


def _check_3d(shape: Sequence[int], name: str) -> tuple[int, int, int]:
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{name} must be a non-empty 3-D shape, got {tuple(shape)}")
    return tuple(int(s) for s in shape)


def resample_to_grid(
    data: np.ndarray,
    affine: np.ndarray,
    target_shape: Sequence[int],
    target_affine: np.ndarray,
    order: int = 1,
) -> np.ndarray:
    """Resample a 3-D volume onto another grid through the two affines; zeros outside the source volume.

    ``order`` is the spline order of :func:`scipy.ndimage.map_coordinates` (0 nearest, e.g. for labels, which
    keep their dtype; 1 trilinear; 3 cubic). Other orders return float32 (float64 for float64 input).
    """
    data = np.asarray(data)
    _check_3d(data.shape, "data")
    target_shape = _check_3d(target_shape, "target_shape")
    transform = _grid_transform(affine, target_affine)
    if order == 0:
        source, dtype = data, data.dtype
    else:
        dtype = np.float64 if data.dtype == np.float64 else np.float32
        source = data.astype(dtype, copy=False)
        if order > 1:
            source = ndimage.spline_filter(source, order=order, output=dtype, mode="nearest")
    out = np.zeros(target_shape, dtype=dtype)
    for rows, coords in _source_coordinates(transform, target_shape):
        values = ndimage.map_coordinates(source, coords, order=order, mode="nearest", prefilter=False, output=dtype)
        values[~_inside(coords, data.shape)] = 0
        out[rows] = values
    return out


MIN_OVERLAP = 0.5  # the least fraction of its target grid a reference must cover (preparers and medsr sr alike)


def overlap_fraction(
    shape: Sequence[int],
    affine: np.ndarray,
    target_shape: Sequence[int],
    target_affine: np.ndarray,
) -> float:
    """Fraction of target voxels whose centre falls inside the source volume of ``shape`` and ``affine``."""
    shape = _check_3d(shape, "shape")
    target_shape = _check_3d(target_shape, "target_shape")
    transform = _grid_transform(affine, target_affine)
    inside = sum(int(_inside(coords, shape).sum()) for _, coords in _source_coordinates(transform, target_shape))
    return inside / float(np.prod(target_shape))
