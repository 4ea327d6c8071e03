"""Super-resolution of whole (normalised) volumes with a 2-D model: slices in batches, tiles, flips, fusion.

Axes are the voxel axes of the array, ``(X, Y, Z) = (0, 1, 2)``. In-plane super-resolution runs the model on the
``Z`` slices (planes of axes 0 and 1); through-plane super-resolution runs it on the two stacks of orthogonal
planes (axes 1 and 2 along ``X``, axes 0 and 2 along ``Y``), upscaling only the ``Z`` axis of each plane, and
averages the two results (orthogonal-plane fusion as in Zhao et al., "SMORE", IEEE TMI 2021). Axes that shrink are
first resampled with an antialiased linear filter; the model only ever upscales.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from medsr.inference.planes import InferenceOptions, predict_planes
from medsr.models.base import SRModel

RefOnGrid = Callable[[tuple[int, int, int]], np.ndarray]


def model_slices(model: SRModel, meta: Mapping[str, Any] | None = None) -> int:
    """Number ``S = 2k + 1`` of adjacent slices the model reads: ``2 * meta["n_adjacent"] + 1`` as training
    records it, else the model's declared ``n_slices``."""
    if meta and meta.get("n_adjacent") is not None:
        return 2 * int(meta["n_adjacent"]) + 1
    return int(model.n_slices)


def shrink(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resample the axes where ``shape`` is smaller with an antialiased linear filter (pixel-centre geometry)."""
    out = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    for axis, size in enumerate(shape):
        if size < out.shape[axis]:
            moved = out.movedim(axis, -1)
            flat = moved.reshape(-1, 1, 1, moved.shape[-1])
            flat = F.interpolate(flat, size=(1, int(size)), mode="bilinear", align_corners=False, antialias=True)
            out = flat.reshape(*moved.shape[:-1], int(size)).movedim(-1, axis)
    return np.ascontiguousarray(out.numpy())


def planes_needed(shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """How many 2-D planes :func:`super_resolve` sends through the model (for the progress bar)."""
    mid = [min(a, b) for a, b in zip(shape, out_shape)]
    inplane = mid[2] if out_shape[0] > mid[0] or out_shape[1] > mid[1] else 0
    through = out_shape[0] + out_shape[1] if out_shape[2] > mid[2] else 0
    return inplane + through


def super_resolve(
    volume: np.ndarray,
    out_shape: Sequence[int],
    model: torch.nn.Module,
    *,
    n_slices: int = 1,
    ref_on_grid: RefOnGrid | None = None,
    options: InferenceOptions = InferenceOptions(),
) -> np.ndarray:
    """Resample a normalised ``[X, Y, Z]`` volume to ``out_shape`` with a 2-D model (see the module docstring).

    ``ref_on_grid(shape)`` returns the normalised reference on the grid of ``shape`` covering the same field of
    view (the output grid of each pass); None runs without reference. Returns float32 ``out_shape``.
    """
    out_shape = tuple(int(s) for s in out_shape)
    bar = tqdm(total=planes_needed(volume.shape, out_shape), unit="plane", disable=not options.progress)
    with bar, torch.inference_mode():
        vol = shrink(volume, [min(a, b) for a, b in zip(volume.shape, out_shape)])
        X, Y, Z = out_shape
        if X > vol.shape[0] or Y > vol.shape[1]:
            ref = None if ref_on_grid is None else np.moveaxis(ref_on_grid((X, Y, vol.shape[2])), 2, 0)
            planes = predict_planes(model, np.moveaxis(vol, 2, 0), (X, Y), ref=ref, n_slices=n_slices,
                                          options=options, bar=bar)
            vol = np.moveaxis(planes, 0, 2)
        if Z > vol.shape[2]:
            ref = None if ref_on_grid is None else ref_on_grid(out_shape)
            along_x = predict_planes(model, vol, (Y, Z), ref=ref, n_slices=n_slices, options=options, bar=bar)
            along_y = predict_planes(model, np.moveaxis(vol, 1, 0), (X, Z),
                                           ref=None if ref is None else np.moveaxis(ref, 1, 0),
                                           n_slices=n_slices, options=options, bar=bar)
            along_x += np.moveaxis(along_y, 0, 1)
            along_x *= 0.5
            vol = along_x
    return np.ascontiguousarray(vol, dtype=np.float32)
