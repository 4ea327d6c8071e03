"""Super-resolution of whole (normalised) volumes with a 2-D model: slices in batches, tiles, flips, fusion.

Axes are the voxel axes of the array, ``(X, Y, Z) = (0, 1, 2)``. In-plane super-resolution runs the model on the
``Z`` slices (planes of axes 0 and 1); through-plane super-resolution runs it on the two stacks of orthogonal
planes (axes 1 and 2 along ``X``, axes 0 and 2 along ``Y``), upscaling only the ``Z`` axis of each plane, and
averages the two results (orthogonal-plane fusion as in Zhao et al., "SMORE", IEEE TMI 2021). Axes that shrink are
first resampled with an antialiased linear filter; the model only ever upscales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from medsr.infer.tiles import Span, spans, window
from medsr.models.base import SRModel, as_image

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))

RefOnGrid = Callable[[tuple[int, int, int]], np.ndarray]


@dataclass(frozen=True)
class InferenceOptions:
    """How planes are fed to the model: ``batch_size`` planes per call, tiles of at most ``tile`` input pixels
    (None = whole planes) overlapping by ``overlap`` (None = a quarter tile, at least 8), flip test-time
    augmentation, device, progress bar."""

    batch_size: int = 8
    tile: int | None = None
    overlap: int | None = None
    tta: bool = False
    device: torch.device = torch.device("cpu")
    progress: bool = True

    def tile_overlap(self) -> int:
        return self.overlap if self.overlap is not None else max(8, (self.tile or 0) // 4)


def model_slices(model: SRModel, meta: Mapping[str, Any] | None = None) -> int:
    """Number ``S = 2k + 1`` of adjacent slices the model reads: ``2 * meta["n_adjacent"] + 1`` as training
    records it, else the model's declared ``n_slices``."""
    if meta and meta.get("n_adjacent") is not None:
        return 2 * int(meta["n_adjacent"]) + 1
    return int(model.n_slices)


def neighbour_indices(n: int, index: Sequence[int], n_slices: int) -> np.ndarray:
    """Indices ``[len(index), n_slices]`` of each slice's neighbours, centred, clamped at the volume's ends."""
    offsets = np.arange(n_slices) - n_slices // 2
    return np.clip(np.asarray(index)[:, None] + offsets[None, :], 0, n - 1)


def _flip(t: torch.Tensor | None, dims: tuple[int, ...]) -> torch.Tensor | None:
    return t.flip(dims) if t is not None and dims else t


def predict(
    model: torch.nn.Module, lr: torch.Tensor, out_size: tuple[int, int], ref: torch.Tensor | None, tta: bool
) -> torch.Tensor:
    """``model(lr, out_size, ref)``, averaged over the four flips of both images when ``tta``."""
    total = None
    for dims in FLIPS if tta else ((),):
        pred = _flip(as_image(model(_flip(lr, dims), out_size, _flip(ref, dims))), dims)
        total = pred if total is None else total + pred
    return total / len(FLIPS) if tta else total


def _tile_weights(ys: list[Span], xs: list[Span], scale: tuple[float, float], overlap: int, device: torch.device):
    """Per-tile windows and their normalising sum over the output plane (None when the plane is one tile)."""
    if len(ys) == 1 and len(xs) == 1:
        return None, None
    windows = {(y, x): torch.from_numpy(window(y, x, scale, overlap)).float().to(device) for y in ys for x in xs}
    total = torch.zeros(ys[-1].out_hi, xs[-1].out_hi, device=device)
    for (y, x), w in windows.items():
        total[y.out_lo : y.out_hi, x.out_lo : x.out_hi] += w
    return windows, total


def super_resolve_planes(
    model: torch.nn.Module,
    stack: np.ndarray,
    out_size: tuple[int, int],
    *,
    ref: np.ndarray | None = None,
    n_slices: int = 1,
    options: InferenceOptions = InferenceOptions(),
    bar: tqdm | None = None,
    planes: Sequence[int] | None = None,
) -> np.ndarray:
    """Super-resolve the ``planes`` (default: all) of ``stack [N, h, w]`` to ``out_size``; returns float32
    ``[len(planes), H, W]``.

    Plane ``i`` is predicted from planes ``i - k .. i + k`` (``n_slices = 2k + 1``) and ``ref[i]`` (``[H, W]``,
    on the output grid) when given. Planes go in batches, in blended overlapping tiles when ``options.tile`` is
    smaller than the plane.
    """
    n, h, w = stack.shape
    H, W = int(out_size[0]), int(out_size[1])
    device = options.device
    overlap = options.tile_overlap()
    ys = spans(h, H, options.tile, overlap)
    xs = spans(w, W, options.tile, overlap)
    windows, total = _tile_weights(ys, xs, (H / h, W / w), overlap, device)
    todo = np.arange(n) if planes is None else np.asarray(planes, dtype=np.int64)
    out = np.empty((len(todo), H, W), dtype=np.float32)
    for start in range(0, len(todo), options.batch_size):
        index = todo[start : start + options.batch_size]
        lr = torch.from_numpy(np.ascontiguousarray(stack[neighbour_indices(n, index, n_slices)], dtype=np.float32))
        lr = lr.to(device)
        ref_batch = None if ref is None else torch.from_numpy(np.ascontiguousarray(ref[index], dtype=np.float32))
        ref_batch = None if ref_batch is None else ref_batch[:, None].to(device)
        acc = torch.zeros(len(index), H, W, device=device)
        for y in ys:
            for x in xs:
                tile_ref = None if ref_batch is None else ref_batch[..., y.out_lo : y.out_hi, x.out_lo : x.out_hi]
                size = (y.out_hi - y.out_lo, x.out_hi - x.out_lo)
                pred = predict(model, lr[..., y.lo : y.hi, x.lo : x.hi], size, tile_ref, options.tta)[:, 0].float()
                weight = 1.0 if windows is None else windows[(y, x)]
                acc[:, y.out_lo : y.out_hi, x.out_lo : x.out_hi] += pred * weight
        out[start : start + len(index)] = (acc if total is None else acc / total).cpu().numpy()
        if bar is not None:
            bar.update(len(index))
    return out


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
            planes = super_resolve_planes(model, np.moveaxis(vol, 2, 0), (X, Y), ref=ref, n_slices=n_slices,
                                          options=options, bar=bar)
            vol = np.moveaxis(planes, 0, 2)
        if Z > vol.shape[2]:
            ref = None if ref_on_grid is None else ref_on_grid(out_shape)
            along_x = super_resolve_planes(model, vol, (Y, Z), ref=ref, n_slices=n_slices, options=options, bar=bar)
            along_y = super_resolve_planes(model, np.moveaxis(vol, 1, 0), (X, Z),
                                           ref=None if ref is None else np.moveaxis(ref, 1, 0),
                                           n_slices=n_slices, options=options, bar=bar)
            along_x += np.moveaxis(along_y, 0, 1)
            along_x *= 0.5
            vol = along_x
    return np.ascontiguousarray(vol, dtype=np.float32)
