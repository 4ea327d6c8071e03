"""Full-reference image metrics, batched in torch: PSNR, NMSE/NRMSE and SSIM.

Inputs are ``[B, C, H, W]`` images or ``[B, C, D, H, W]`` volumes (float32/float64, integer tensors are computed
in float64), on any device. Every metric returns one value per item, ``Tensor[B]``. The data range is always an
argument (a float or a per-item tensor ``[B]``); :func:`resolve_data_range` turns a rule into those values.
Each metric is registered in ``medsr.registry.METRICS`` under its name (``medsr evaluate --metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from medsr.errors import InputError
from medsr.registry import METRICS

DATA_RANGE_RULES = ("gt-range", "gt-max", "dtype")
# On CPU, metrics run over chunks of about this many input elements per thread, so that temporaries stay in cache.
_CPU_CHUNK = 1 << 17


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
    # scikit-image's structural_similarity defaults (the same window), the data range the caller's: LDCT-bench
    # (Eulig et al., Med. Phys. 2024) scores its [0, 1] windowed CT with it at data range 1.
    "skimage": SSIMPreset("skimage", "uniform", 7, 0.0, True, None),
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


def _chunked_mean(fn: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor],
                  mask: torch.Tensor | None) -> torch.Tensor:
    """:func:`_masked_mean` of ``fn(*tensors)`` per item. On CPU the batch runs in chunks of about ``_CPU_CHUNK``
    elements per thread, so that the temporaries stay in cache; on other devices all at once."""
    first = tensors[0]
    chunk = _CPU_CHUNK * torch.get_num_threads()
    step = first.shape[0] if first.device.type != "cpu" else max(1, chunk // max(1, first[0].numel()))
    parts = [slice(start, start + step) for start in range(0, first.shape[0], step)]
    per_item_mask = mask is not None and mask.ndim == first.ndim and mask.shape[0] > 1
    return torch.cat([_masked_mean(fn(*(t[p] for t in tensors)), mask[p] if per_item_mask else mask) for p in parts])


def crop_border(x: torch.Tensor, n: int) -> torch.Tensor:
    """Remove ``n`` pixels from each side of the last two (in-plane) dimensions."""
    if n < 0:
        raise ValueError(f"crop must be >= 0, got {n}")
    if n == 0:
        return x
    return x[..., n:-n, n:-n]


def _squared_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    return (pred - gt).square_()


@METRICS.register("psnr")
def psnr(pred: torch.Tensor, gt: torch.Tensor, data_range: float | torch.Tensor,
         mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio ``10 log10(R^2 / MSE)`` in dB, per item (per volume for 5-D input)."""
    pred, gt = _check_pair(pred, gt)
    mse = _chunked_mean(_squared_error, (pred, gt), mask)
    peak = _per_item(data_range, mse.view(-1, 1)).view(-1)
    return 10 * torch.log10(peak**2 / mse)


@METRICS.register("nmse")
def nmse(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised mean squared error ``||pred - gt||^2 / ||gt||^2`` per item (fastMRI's NMSE)."""
    pred, gt = _check_pair(pred, gt)
    error = _chunked_mean(_squared_error, (pred, gt), mask)
    return error / _chunked_mean(torch.square, (gt,), mask)


@METRICS.register("nrmse")
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


def _window_1d(preset: SSIMPreset, size: int) -> list[float]:
    if preset.window == "uniform":
        return [1.0 / size] * size
    taps = np.exp(-0.5 * (np.arange(size) - size // 2) ** 2 / preset.sigma**2)
    return (taps / taps.sum()).tolist()


def _filter_valid(x: torch.Tensor, taps: list[float], axes: Sequence[int]) -> torch.Tensor:
    """Separable 'valid' filtering of ``x`` along ``axes`` with the same 1-D taps, as shifted multiply-adds.

    On CPU this beats depthwise convolutions: every pass is a fused, vectorised, in-cache ``add_(alpha=...)``
    over contiguous rows, with no layout changes, in float32 and float64 alike.
    """
    for axis in axes:
        length = x.shape[axis] - len(taps) + 1
        out = x.narrow(axis, 0, length) * taps[0]
        for i, tap in enumerate(taps[1:], start=1):
            out.add_(x.narrow(axis, i, length), alpha=tap)
        x = out
    return x


def _ssim_map(x: torch.Tensor, y: torch.Tensor, peak: torch.Tensor, preset: SSIMPreset, size: int) -> torch.Tensor:
    """SSIM map over the valid region of ``x, y [B, C, *spatial]``; ``peak`` broadcasts as ``[B, 1, ...]``.

    Filters four moment maps (x, y, x^2 + y^2, xy) at once (the variances only enter SSIM as their sum), then
    evaluates the SSIM formula in place on the filtered maps.
    """
    nd = x.ndim - 2
    stack = torch.stack([x, y, torch.addcmul(x * x, y, y), x * y])
    ux, uy, u_sq, uxy = _filter_valid(stack, _window_1d(preset, size), range(-nd, 0)).unbind(0)
    count = size**nd
    cov_norm = count / (count - 1) if preset.sample_covariance else 1.0
    c1, c2 = (preset.k1 * peak) ** 2, (preset.k2 * peak) ** 2
    mean_xy = ux * uy
    mean_sq = ux.square_().add_(uy.square_())
    numerator = uxy.sub_(mean_xy).mul_(2 * cov_norm).add_(c2).mul_(mean_xy.mul_(2).add_(c1))
    denominator = u_sq.sub_(mean_sq).mul_(cov_norm).add_(c2).mul_(mean_sq.add_(c1))
    return numerator.div_(denominator)


def _crop_to_valid(mask: torch.Tensor, shape: Sequence[int], pad: int, nd: int) -> torch.Tensor:
    mask = torch.broadcast_to(mask, tuple(shape))
    index = (Ellipsis, *[slice(pad, mask.shape[d] - pad) for d in range(mask.ndim - nd, mask.ndim)])
    return mask[index]


@METRICS.register("ssim")
def ssim(pred: torch.Tensor, gt: torch.Tensor, data_range: float | torch.Tensor, preset: str = "wang",
         win_size: int | None = None, volume_mode: str = "slices", mask: torch.Tensor | None = None) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) per item, averaged over channels and the valid region.

    With the default preset it equals ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R)``. ``win_size`` overrides the preset's window (the Gaussian keeps
    sigma 1.5, truncated to the window). Images smaller than the window use :func:`ssim_window`; where no window
    fits the result is NaN. Volumes: ``volume_mode="slices"`` averages 2-D SSIM over all slices, ``"3d"`` uses a
    cubic window. ``mask`` (broadcastable to the input) restricts the average to foreground pixels. The data range
    a preset prescribes (``SSIM_PRESETS[preset].data_range_rule``, e.g. ``gt-max`` for fastMRI) is the caller's to
    apply through :func:`resolve_data_range`.
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
    return _chunked_mean(lambda p, g, r: _ssim_map(p, g, r, spec, size), (pred, gt, peak), mask)


def default_data_range_rule(dtype: np.dtype | torch.dtype) -> str:
    """The rule used when none is given: ``dtype`` for integer images, ``gt-range`` for float images."""
    return "dtype" if _is_integer(dtype) else "gt-range"


def _is_integer(dtype: np.dtype | torch.dtype) -> bool:
    """Integer storage, booleans (1-bit images) included."""
    if isinstance(dtype, torch.dtype):
        return not (dtype.is_floating_point or dtype.is_complex)
    return bool(np.issubdtype(np.dtype(dtype), np.integer)) or np.dtype(dtype) == np.bool_


def dtype_bounds(dtype: np.dtype | torch.dtype) -> tuple[float, float]:
    """``(min, max)`` of an integer storage type; a boolean (1-bit) image spans [0, 1]."""
    if dtype == torch.bool or (not isinstance(dtype, torch.dtype) and np.dtype(dtype) == np.bool_):
        return 0.0, 1.0
    info = torch.iinfo(dtype) if isinstance(dtype, torch.dtype) else np.iinfo(np.dtype(dtype))
    return float(info.min), float(info.max)


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
        low, high = dtype_bounds(dtype)
        return torch.full((gt.shape[0],), high - low, dtype=out_dtype, device=gt.device)
    try:
        value = float(rule)
    except ValueError:
        raise InputError("--data-range", f"'{rule}' is not a number or one of {', '.join(DATA_RANGE_RULES)}") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError("--data-range", f"must be a positive number, got {rule}")
    return torch.full((gt.shape[0],), value, dtype=out_dtype, device=gt.device)
