"""Do-no-harm self-test of ``medsr sr``: degrade the input once more, super-resolve it back, compare.

A user's volume has no ground truth at the output resolution, but it is its own ground truth one level down:
degraded by the requested factor it becomes an input whose answer is known. In-plane, the Z slices are
downsampled with the k-space contract (:func:`medsr.kspace.downsample`), super-resolved back to the input grid and
compared with the input, beside k-space zero-filling (:func:`medsr.kspace.zero_fill_upsample`, the exact inverse
inside the band). Through-plane, the volume is coarsened along Z by the factor with the slice profile: the input's
slices already carry a profile of FWHM ``t`` (the relative thickness of :class:`medsr.slice_profile.SliceProfile`,
in input slices), so the extra blur is the width that adds up to the target ``f t``: Gaussian widths (and, for any
profile, variances) add in quadrature, ``w = t sqrt(f^2 - 1)`` (:func:`redegrade_width`; re-blurring by ``f t``
would give ``t sqrt(1 + f^2)``). The planes along X and along Y are super-resolved back along Z and compared
beside cubic interpolation along Z (the squared errors of both orientations pooled). PSNR uses the maximum of the
(normalised) input as data range.

The margin (model minus baseline, dB, from the errors pooled over the tested planes, as a whole-volume PSNR is)
comes with a paired 95 % t-interval over the planes (Z slices in-plane, X and Y planes through-plane): the margin is
``10 log10 R`` with ``R = sum_i B_i / sum_i A_i`` (``A_i``, ``B_i`` the squared errors of plane ``i`` of the model
and the baseline), a ratio estimator whose linearisation ``10 / ln 10 * n (B_i - R A_i) / (R sum A)`` per plane
(Cochran, "Sampling Techniques", 1977, ch. 6) averages to zero, so the t-interval of ``margin + linearisation``
(:func:`medsr.evaluation.report.summarise`) is centred on the margin. A mean of per-plane dB margins would weigh a
background plane like one full of anatomy. Neighbouring planes are correlated, so the interval is a guide, narrower
than an interval over independent volumes would be.

When ``medsr sr --adapt`` will fine-tune on the volume, the test holds out contiguous blocks of Z slices
(:func:`hold_out_blocks`, at most a quarter of the slices): adaptation neither trains on them nor on the slices
within a gap around them (:func:`medsr.infer.adapt.training_slices`), and the test scores only them (in-plane:
those slices; through-plane: those Z rows of the tested planes), for the original and the adapted weights alike.

Cost: the model work (output pixels) of each test is at most :data:`BUDGET` of the inference's, the planes taken
evenly spaced; at x2 in-plane the degraded problem is a quarter the size, so half of the slices are used. The
budget is an eighth rather than the quarter the issue allows because on CPU the smaller degraded planes run less
efficiently per pixel (measured: 36% of the inference time with a fifth of its output pixels, on 128x128x10).
The same idea (the image as its own training and test signal one scale down) is the zero-shot setting of Shocher
et al., "Zero-Shot Super-Resolution using Deep Internal Learning", CVPR 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from medsr import kspace
from medsr.evaluation.report import Summary, summarise
from medsr.infer.volume import RefOnGrid
from medsr.inference.planes import InferenceOptions, predict_planes
from medsr.metrics.image import psnr
from medsr.models.base import bicubic_upsample
from medsr.slice_profile import SliceProfile, thick_slices

BUDGET = 0.125
TOLERANCE_DB = 0.05
HELD_OUT_FRACTION = 0.25
BLOCK = 4


def evenly(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)``, centred in their shares (the first and last are avoided)."""
    return np.floor((np.arange(k) + 0.5) * n / k).astype(np.int64)


def hold_out_blocks(n: int, count: int) -> np.ndarray:
    """``count`` of ``range(n)`` in contiguous blocks of at most :data:`BLOCK`, the blocks centred in equal shares
    of the axis (sorted indices)."""
    sizes = [len(part) for part in np.array_split(np.arange(count), math.ceil(count / BLOCK))]
    starts = np.clip(evenly(n, len(sizes)) - np.asarray(sizes) // 2, 0, n - np.asarray(sizes))
    return np.unique(np.concatenate([np.arange(a, a + k) for a, k in zip(starts, sizes)]))


def _count(n: int, budget_planes: float) -> int:
    return int(min(n, max(1, np.floor(budget_planes))))


@dataclass(frozen=True)
class SelfTestPlan:
    """Which planes each test uses: ``slices`` (Z slices, in-plane test), ``x_planes`` and ``y_planes``
    (through-plane test); None where that direction is not upscaled. ``held_out``: the Z slices held out of
    adaptation (None without), the only Z rows the through-plane test scores then."""

    slices: np.ndarray | None
    x_planes: np.ndarray | None
    y_planes: np.ndarray | None
    held_out: np.ndarray | None = None


def plan_self_test(shape: Sequence[int], out_shape: Sequence[int], hold_out: bool = False) -> SelfTestPlan:
    """Planes for a self-test of ``shape -> out_shape`` (``shape`` already shrunk to at most ``out_shape``) within
    :data:`BUDGET`. With ``hold_out`` (adaptation will train on the rest) the held-out Z slices are blocks
    (:func:`hold_out_blocks`) of at most a quarter of them (at least one), the in-plane test's slices."""
    X, Y, Z = (int(s) for s in shape)
    Xo, Yo, Zo = (int(s) for s in out_shape)
    slices = x_planes = y_planes = held = None
    count = Z
    if Xo > X or Yo > Y:
        count = _count(Z, BUDGET * Z * Xo * Yo / (X * Y))
        slices = evenly(Z, count)
    if hold_out:
        held = hold_out_blocks(Z, min(count, max(1, int(Z * HELD_OUT_FRACTION))))
        slices = None if slices is None else held
    if Zo > Z:
        work = BUDGET * Xo * Yo * Zo
        x_planes = evenly(X, _count(X, work / (Y * Z)))
        y_planes = evenly(Y, _count(Y, work / (X * Z)))
    return SelfTestPlan(slices, x_planes, y_planes, held)


@dataclass(frozen=True)
class SelfTestResult:
    """One test: PSNR (pooled over the tested planes) of the model and of the baseline against the input, in dB,
    and the paired t-summary of the margin over the planes (``paired``, over ``units``; its mean is the margin)."""

    direction: str
    scale: str
    model_db: float
    baseline: str
    baseline_db: float
    planes: str
    paired: Summary
    units: str

    @property
    def margin(self) -> float:
        return self.model_db - self.baseline_db

    @property
    def loses(self) -> bool:
        return not self.margin >= -TOLERANCE_DB  # a NaN margin (a model producing NaN) loses too

    def interval(self) -> str:
        if math.isnan(self.paired.ci95_low):
            return f"no interval from one {self.units[:-1]}"
        return (f"per-{self.units[:-1]} paired 95 % interval {self.paired.ci95_low:+.2f} to "
                f"{self.paired.ci95_high:+.2f} dB")

    def line(self) -> str:
        return (f"self-test: model {self.model_db:.1f} dB vs {self.baseline} {self.baseline_db:.1f} dB on this "
                f"volume ({self.margin:+.2f} dB, {self.interval()}; {self.direction} {self.scale}, {self.planes})")

    def warning(self) -> str:
        return (f"self-test: the model is {-self.margin:.1f} dB worse than {self.baseline} on this volume "
                f"({self.direction} {self.scale}); its output may be worse than plain {self.baseline} "
                "(--adapt fine-tunes it on this volume, --strict refuses to write)")


def _psnr(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray], peak: float) -> float:
    flat = [torch.from_numpy(np.concatenate([np.ravel(a) for a in arrays]))[None, None, None]
            for arrays in (pred, truth)]
    return float(psnr(flat[0].double(), flat[1].double(), peak))


def _plane_errors(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> np.ndarray:
    """Sum of squared errors of each plane (axis 0 of each array of the sequences), float64."""
    return np.concatenate([((np.asarray(p, np.float64) - t) ** 2).reshape(len(t), -1).sum(axis=1)
                           for p, t in zip(pred, truth)])


def paired_margin(model_errors: np.ndarray, base_errors: np.ndarray) -> Summary:
    """The t-summary of the pooled margin ``10 log10(sum B / sum A)`` over the planes, by the linearisation of
    the module docstring (NaN where an error is not finite)."""
    A, B = np.asarray(model_errors, np.float64), np.asarray(base_errors, np.float64)
    if not (np.isfinite(A).all() and np.isfinite(B).all()):
        return Summary(*[math.nan] * 4)
    tiny = np.finfo(np.float64).tiny
    ratio = max(B.sum(), tiny) / max(A.sum(), tiny)
    linear = 10 / math.log(10) * len(A) * (B - ratio * A) / (ratio * max(A.sum(), tiny))
    return summarise((10 * math.log10(ratio) + linear).tolist())


def _result(direction: str, scale: str, baseline: str, planes: str, units: str, pred: Sequence[np.ndarray],
            base: Sequence[np.ndarray], truth: Sequence[np.ndarray], peak: float) -> SelfTestResult:
    paired = paired_margin(_plane_errors(pred, truth), _plane_errors(base, truth))
    return SelfTestResult(direction, scale, _psnr(pred, truth, peak), baseline, _psnr(base, truth, peak), planes,
                          paired, units)


def _scale(factors: Sequence[float]) -> str:
    return "x" + ",".join(f"{f:.3g}" for f in (factors[:1] if len(set(factors)) == 1 else factors))


def _inplane(volume: np.ndarray, out_shape: Sequence[int], model: torch.nn.Module, slices: np.ndarray,
             n_slices: int, ref: np.ndarray | None, options: InferenceOptions, peak: float) -> SelfTestResult | None:
    X, Y, Z = volume.shape
    factors = (out_shape[0] / X, out_shape[1] / Y)
    lr_size = kspace.lr_shape((X, Y), factors)
    if min(lr_size) < 2:
        return None
    stack = np.moveaxis(volume, 2, 0)
    degraded = np.ascontiguousarray(kspace.downsample(stack, size=lr_size), dtype=np.float32)
    ref_stack = None if ref is None else np.moveaxis(ref, 2, 0)
    pred = predict_planes(model, degraded, (X, Y), ref=ref_stack, n_slices=n_slices, options=options,
                                planes=slices)
    base = kspace.zero_fill_upsample(degraded[slices], (X, Y))
    truth = stack[slices]
    return _result("in-plane", _scale(factors), "zero-filling", f"{len(slices)} of {Z} slices", "slices", [pred],
                   [base], [truth], peak)


def _cubic_along_last(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return bicubic_upsample(torch.from_numpy(planes)[:, None], size)[:, 0].numpy()


def redegrade_width(factor: float, thickness: float) -> float:
    """FWHM (input slices) of the extra blur that turns slices of relative ``thickness`` into slices ``factor``
    times as far apart and as thick: widths add in quadrature, ``thickness sqrt(factor^2 - 1)`` (exact for
    Gaussian profiles; for the rect profile the variances add up the same way, the shape is only approximate)."""
    return thickness * math.sqrt(factor**2 - 1.0)


def _through(volume: np.ndarray, out_shape: Sequence[int], model: torch.nn.Module, plan: SelfTestPlan,
             n_slices: int, ref: np.ndarray | None, options: InferenceOptions, peak: float,
             profile: SliceProfile) -> SelfTestResult | None:
    X, Y, Z = volume.shape
    factor = out_shape[2] / Z
    coarse = thick_slices(volume, 2, redegrade_width(factor, profile.thickness), factor,
                          profile.kind).astype(np.float32)
    if coarse.shape[2] < 2:
        return None
    rows = slice(None) if plan.held_out is None else plan.held_out
    preds, bases, truths = [], [], []
    for axis, planes in ((0, plan.x_planes), (1, plan.y_planes)):
        stack, truth = np.moveaxis(coarse, axis, 0), np.moveaxis(volume, axis, 0)[planes]
        ref_stack = None if ref is None else np.moveaxis(ref, axis, 0)
        size = truth.shape[1:]
        pred = predict_planes(model, stack, size, ref=ref_stack, n_slices=n_slices, options=options,
                                    planes=planes)
        preds.append(pred[..., rows])
        bases.append(_cubic_along_last(np.ascontiguousarray(stack[planes]), size)[..., rows])
        truths.append(truth[..., rows])
    scored = "" if plan.held_out is None else f", {len(plan.held_out)} held-out Z rows"
    return _result("through-plane", _scale([factor]), "cubic interpolation",
                   f"{len(plan.x_planes)} of {X} X and {len(plan.y_planes)} of {Y} Y planes{scored}", "planes", preds,
                   bases, truths, peak)


def run_self_test(
    volume: np.ndarray,
    out_shape: Sequence[int],
    model: torch.nn.Module,
    plan: SelfTestPlan,
    *,
    n_slices: int = 1,
    ref_on_grid: RefOnGrid | None = None,
    options: InferenceOptions = InferenceOptions(),
    profile: SliceProfile = SliceProfile(),
) -> list[SelfTestResult]:
    """Self-tests of ``model`` on the normalised ``volume`` (already shrunk to at most ``out_shape``) for the
    directions ``plan`` covers; a direction too small to degrade further (fewer than 2 samples) is left out.
    Raises ``ValueError`` when the model cannot do the degraded problem (e.g. a fixed-scale model)."""
    options = replace(options, progress=False)
    ref = None if ref_on_grid is None else ref_on_grid(tuple(volume.shape))
    peak = float(volume.max()) or 1.0
    results = []
    with torch.inference_mode():
        if plan.slices is not None:
            results.append(_inplane(volume, out_shape, model, plan.slices, n_slices, ref, options, peak))
        if plan.x_planes is not None:
            results.append(_through(volume, out_shape, model, plan, n_slices, ref, options, peak, profile))
    return [r for r in results if r is not None]
