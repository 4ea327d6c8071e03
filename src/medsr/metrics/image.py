"""Full-reference image metrics, batched in torch: PSNR, NMSE/NRMSE and SSIM.

Inputs are ``[B, C, H, W]`` images or ``[B, C, D, H, W]`` volumes (float32/float64, integer tensors are computed
in float64), on any device. Every metric returns one value per item, ``Tensor[B]``. The data range is always an
argument (a float or a per-item tensor ``[B]``); :func:`resolve_data_range` turns a rule into those values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medsr.errors import InputError

DATA_RANGE_RULES = ("gt-range", "gt-max", "dtype")
# On CPU, SSIM runs over chunks of about this many input elements so that its moment maps stay in cache.
_CPU_CHUNK = 1 << 18


@dataclass(frozen=True)
class SSIMPreset:
    """One SSIM protocol: window shape and size, covariance estimator, constants and data-range rule.

    ``data_range_rule`` is the rule the protocol prescribes, or ``None`` for the dtype-dependent default.
    """

    name: str
    window: str
    win_size: int
    sigma: float
    sample_covariance: bool
    data_range_rule: str | None
    k1: float = 0.01
    k2: float = 0.03


SSIM_PRESETS = {
    # Wang et al. 2004, "Image quality assessment: from error visibility to structural similarity", IEEE TIP:
    # Gaussian window sigma 1.5 truncated at 3.5 sigma (11x11), population covariance, mean over the valid region.
    "wang": SSIMPreset("wang", "gaussian", 11, 1.5, False, None),
    # Zbontar et al. 2018, "fastMRI: An Open Dataset and Benchmarks for Accelerated MRI": scikit-image defaults
    # (7x7 uniform window, sample covariance), data range = maximum of the reference volume.
    "fastmri": SSIMPreset("fastmri", "uniform", 7, 0.0, True, "gt-max"),
}


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float64)


def _check_pair(pred: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    if pred.ndim not in (4, 5):
        raise ValueError(f"expected [B, C, H, W] or [B, C, D, H, W], got shape {tuple(pred.shape)}")
    pred, gt = _as_float(pred), _as_float(gt)
    dtype = torch.promote_types(pred.dtype, gt.dtype)
    return pred.to(dtype), gt.to(dtype)


def _per_item(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a tensor ``[B, 1, ..., 1]`` that broadcasts against ``like``."""
    batch = like.shape[0]
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.ndim == 0:
        value = value.expand(batch)
    if value.shape != (batch,):
        raise ValueError(f"data_range must be a float or a tensor [B] with B = {batch}, got {tuple(value.shape)}")
    return value.view(batch, *([1] * (like.ndim - 1)))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over all but the batch dimension, restricted to ``mask`` (NaN where the mask is empty)."""
    dims = tuple(range(1, values.ndim))
    if mask is None:
        return values.mean(dims)
    weights = torch.broadcast_to(mask, values.shape).to(values.dtype)
    return (values * weights).sum(dims) / weights.sum(dims)


def crop_border(x: torch.Tensor, n: int) -> torch.Tensor:
    """Remove ``n`` pixels from each side of the last two (in-plane) dimensions."""
    if n < 0:
        raise ValueError(f"crop must be >= 0, got {n}")
    if n == 0:
        return x
    return x[..., n:-n, n:-n]


def psnr(pred: torch.Tensor, gt: torch.Tensor, data_range: float | torch.Tensor,
         mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(R^2 / MSE)`` in dB, per item (per volume for 5-D input)."""
    pred, gt = _check_pair(pred, gt)
    mse = _masked_mean((pred - gt) ** 2, mask)
    peak = _per_item(data_range, mse.view(-1, 1)).view(-1)
    return 10 * torch.log10(peak**2 / mse)


def nmse(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised mean squared error ``||pred - gt||^2 / ||gt||^2`` per item (fastMRI's NMSE)."""
    pred, gt = _check_pair(pred, gt)
    return _masked_mean((pred - gt) ** 2, mask) / _masked_mean(gt**2, mask)


def nrmse(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised root mean squared error ``||pred - gt|| / ||gt||`` per item (scikit-image's 'euclidean')."""
    return nmse(pred, gt, mask).sqrt()


def ssim_window(spatial: Sequence[int], win_size: int) -> int:
    """The window used on an image of extent ``spatial``: ``win_size`` if it fits, else the largest odd size that
    fits (at least 3), else 0 (not computable)."""
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"SSIM window must be odd and >= 3, got {win_size}")
    smallest = min(spatial)
    if smallest >= win_size:
        return win_size
    fitting = smallest if smallest % 2 else smallest - 1
    return fitting if fitting >= 3 else 0


def _window_1d(preset: SSIMPreset, size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if preset.window == "uniform":
        return torch.full((size,), 1.0 / size, dtype=dtype, device=device)
    x = torch.arange(size, dtype=torch.float64) - size // 2
    taps = torch.exp(-0.5 * x**2 / preset.sigma**2)
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def _filter_valid(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of every channel of ``x [N, K, *spatial]`` (2 or 3 spatial dims) with 1-D taps.

    Depthwise convolutions in channels-last layout, which oneDNN vectorises over channels (float32 and lower
    precisions); float64 has no oneDNN kernels and runs fastest in the default layout.
    """
    nd, channels = x.ndim - 2, x.shape[1]
    conv = F.conv2d if nd == 2 else F.conv3d
    if x.dtype != torch.float64:
        x = x.contiguous(memory_format=torch.channels_last if nd == 2 else torch.channels_last_3d)
    for axis in range(nd):
        shape = [1] * nd
        shape[axis] = taps.numel()
        x = conv(x, taps.view(1, 1, *shape).expand(channels, 1, *shape), groups=channels)
    return x


def _ssim_map(x: torch.Tensor, y: torch.Tensor, peak: torch.Tensor, preset: SSIMPreset, size: int) -> torch.Tensor:
    """SSIM map over the valid region of ``x, y [B, C, *spatial]``; ``peak`` broadcasts as ``[B, 1, ...]``.

    Filters four moment maps (x, y, x^2 + y^2, xy): the variances only enter SSIM as their sum.
    """
    spatial = x.shape[2:]
    stack = torch.stack([x, y, x * x + y * y, x * y]).reshape(1, -1, *spatial)
    moments = _filter_valid(stack, _window_1d(preset, size, x.dtype, x.device))
    ux, uy, u_sq, uxy = moments.view(4, *x.shape[:2], *moments.shape[2:]).unbind(0)
    count = size ** len(spatial)
    cov_norm = count / (count - 1) if preset.sample_covariance else 1.0
    c1, c2 = (preset.k1 * peak) ** 2, (preset.k2 * peak) ** 2
    mean_xy = ux * uy
    mean_sq = ux * ux + uy * uy
    numerator = (2 * mean_xy + c1) * ((2 * cov_norm) * (uxy - mean_xy) + c2)
    denominator = (mean_sq + c1) * (cov_norm * (u_sq - mean_sq) + c2)
    return numerator / denominator


def _crop_to_valid(mask: torch.Tensor, shape: Sequence[int], pad: int, nd: int) -> torch.Tensor:
    mask = torch.broadcast_to(mask, tuple(shape))
    index = (Ellipsis, *[slice(pad, mask.shape[d] - pad) for d in range(mask.ndim - nd, mask.ndim)])
    return mask[index]


def ssim(pred: torch.Tensor, gt: torch.Tensor, data_range: float | torch.Tensor, preset: str = "wang",
         win_size: int | None = None, volume_mode: str = "slices", mask: torch.Tensor | None = None) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per item, averaged over channels and the valid region.

    With the default preset it equals ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R)``. ``win_size`` overrides the preset's window (the Gaussian keeps
    sigma 1.5, truncated to the window). Images smaller than the window use :func:`ssim_window`; where no window
    fits the result is NaN. Volumes: ``volume_mode="slices"`` averages 2-D SSIM over all slices, ``"3d"`` uses a
    cubic window. ``mask`` (broadcastable to the input) restricts the average to foreground pixels.
    """
    if preset not in SSIM_PRESETS:
        raise ValueError(f"unknown SSIM preset '{preset}' (known: {', '.join(SSIM_PRESETS)})")
    if volume_mode not in ("slices", "3d"):
        raise ValueError(f"volume_mode must be 'slices' or '3d', got '{volume_mode}'")
    spec = SSIM_PRESETS[preset]
    pred, gt = _check_pair(pred, gt)
    nd = 3 if pred.ndim == 5 and volume_mode == "3d" else 2
    size = ssim_window(pred.shape[-nd:], win_size or spec.win_size)
    if size == 0:
        return torch.full((pred.shape[0],), float("nan"), dtype=pred.dtype, device=pred.device)
    if mask is not None:
        mask = _crop_to_valid(mask, pred.shape, (size - 1) // 2, nd)
    if pred.ndim == 5 and nd == 2:
        pred, gt = pred.flatten(1, 2), gt.flatten(1, 2)
        mask = mask.flatten(1, 2) if mask is not None else None
    peak = _per_item(data_range, pred)
    step = pred.shape[0] if pred.device.type != "cpu" else max(1, _CPU_CHUNK // pred[0].numel())
    parts = [slice(start, start + step) for start in range(0, pred.shape[0], step)]
    return torch.cat([_masked_mean(_ssim_map(pred[p], gt[p], peak[p], spec, size), None if mask is None else mask[p])
                      for p in parts])


def default_data_range_rule(dtype: np.dtype | torch.dtype) -> str:
    """The rule used when none is given: ``dtype`` for integer images, ``gt-range`` for float images."""
    return "dtype" if _is_integer(dtype) else "gt-range"


def _is_integer(dtype: np.dtype | torch.dtype) -> bool:
    if isinstance(dtype, torch.dtype):
        return not (dtype.is_floating_point or dtype.is_complex) and dtype != torch.bool
    return bool(np.issubdtype(np.dtype(dtype), np.integer))


def resolve_data_range(rule: str, gt: torch.Tensor, dtype: np.dtype | torch.dtype) -> torch.Tensor:
    """Per-item data range ``[B]`` of reference ``gt [B, ...]`` under ``rule``.

    ``N`` (a positive number) | ``gt-range`` (max - min of each reference) | ``gt-max`` (max of each reference) |
    ``dtype`` (the full range of the integer storage type ``dtype``, e.g. 255 for uint8).
    """
    out_dtype = gt.dtype if gt.is_floating_point() else torch.float64
    flat = gt.flatten(1).to(out_dtype)
    if rule == "gt-range":
        return flat.amax(1) - flat.amin(1)
    if rule == "gt-max":
        return flat.amax(1)
    if rule == "dtype":
        if not _is_integer(dtype):
            raise InputError("--data-range", f"rule 'dtype' needs integer images, the images are {dtype}")
        info = torch.iinfo(dtype) if isinstance(dtype, torch.dtype) else np.iinfo(np.dtype(dtype))
        return torch.full((gt.shape[0],), float(info.max) - float(info.min), dtype=out_dtype, device=gt.device)
    try:
        value = float(rule)
    except ValueError:
        raise InputError("--data-range", f"'{rule}' is not a number or one of {', '.join(DATA_RANGE_RULES)}") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError("--data-range", f"must be a positive number, got {rule}")
    return torch.full((gt.shape[0],), value, dtype=out_dtype, device=gt.device)
