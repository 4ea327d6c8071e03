"""The one way a 2-D model predicts planes: batches, neighbouring slices, blended overlapping tiles, flips.

Every path that runs a restoration model over many 2-D planes goes through :func:`predict_planes` (MONAI's
``Inferer`` idea): ``medsr sr`` and its self-test (:mod:`medsr.infer.volume`, :mod:`medsr.infer.selftest`),
``medsr denoise``, denoising validation, the CT demo and the CT benchmark (:mod:`medsr.inference.denoise`). A model
here has the plane interface ``model(lr [B, S, h, w], out_size, ref [B, 1, H, W] | None) -> [B, 1, H, W]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from medsr.inference.tiles import Span, spans, window
from medsr.models.base import as_image

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


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


def predict_planes(
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
    """Predict the ``planes`` (default: all) of ``stack [N, h, w]`` at ``out_size``; returns float32
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
