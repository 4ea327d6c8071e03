"""Do-no-harm self-test of ``medsr sr``: degrade the input once more, super-resolve it back, compare.

A user's volume has no ground truth at the output resolution, but it is its own ground truth one level down:
degraded by the requested factor it becomes an input whose answer is known. In-plane, the Z slices are
downsampled with the k-space contract (:func:`medsr.kspace.downsample`), super-resolved back to the input grid and
compared with the input, beside k-space zero-filling (:func:`medsr.kspace.zero_fill_upsample`, the exact inverse
inside the band). Through-plane, the volume is coarsened along Z with the slice profile
(:class:`medsr.slice_profile.SliceProfile`), the planes along X and along Y are super-resolved back along Z and
compared beside cubic interpolation along Z (the squared errors of both orientations pooled). PSNR uses the
maximum of the (normalised) input as data range.

Cost: the model work (output pixels) of each test is at most :data:`BUDGET` of the inference's, the planes taken
evenly spaced; at x2 in-plane the degraded problem is a quarter the size, so half of the slices are used. The
budget is an eighth rather than the quarter the issue allows because on CPU the smaller degraded planes run less
efficiently per pixel (measured: 36% of the inference time with a fifth of its output pixels, on 128x128x10).
The same idea (the image as its own training and test signal one scale down) is the zero-shot setting of Shocher
et al., "Zero-Shot Super-Resolution using Deep Internal Learning", CVPR 2018.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from medsr import kspace
from medsr.infer.volume import InferenceOptions, RefOnGrid, super_resolve_planes
from medsr.metrics.image import psnr
from medsr.models.base import bicubic_upsample
from medsr.slice_profile import SliceProfile

BUDGET = 0.125
TOLERANCE_DB = 0.05
HELD_OUT_FRACTION = 0.25


def evenly(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)``, centred in their shares (the first and last are avoided)."""
    return np.floor((np.arange(k) + 0.5) * n / k).astype(np.int64)


def _count(n: int, budget_planes: float) -> int:
    return int(min(n, max(1, np.floor(budget_planes))))


@dataclass(frozen=True)
class SelfTestPlan:
    """Which planes each test uses: ``slices`` (Z slices, in-plane test), ``x_planes`` and ``y_planes``
    (through-plane test); None where that direction is not upscaled."""

    slices: np.ndarray | None
    x_planes: np.ndarray | None
    y_planes: np.ndarray | None


def plan_self_test(shape: Sequence[int], out_shape: Sequence[int], hold_out: bool = False) -> SelfTestPlan:
    """Planes for a self-test of ``shape -> out_shape`` (``shape`` already shrunk to at most ``out_shape``) within
    :data:`BUDGET`. With ``hold_out`` (adaptation will train on the rest) at most a quarter of the Z slices (at
    least one) are taken for the in-plane test."""
    X, Y, Z = (int(s) for s in shape)
    Xo, Yo, Zo = (int(s) for s in out_shape)
    slices = x_planes = y_planes = None
    if Xo > X or Yo > Y:
        k = _count(Z, BUDGET * Z * Xo * Yo / (X * Y))
        if hold_out:
            k = min(k, max(1, int(Z * HELD_OUT_FRACTION)))
        slices = evenly(Z, k)
    if Zo > Z:
        work = BUDGET * Xo * Yo * Zo
        x_planes = evenly(X, _count(X, work / (Y * Z)))
        y_planes = evenly(Y, _count(Y, work / (X * Z)))
    return SelfTestPlan(slices, x_planes, y_planes)


@dataclass(frozen=True)
class SelfTestResult:
    """One test: PSNR of the model and of the baseline against the input, in dB."""

    direction: str
    scale: str
    model_db: float
    baseline: str
    baseline_db: float
    planes: str

    @property
    def margin(self) -> float:
        return self.model_db - self.baseline_db

    @property
    def loses(self) -> bool:
        return not self.margin >= -TOLERANCE_DB  # a NaN margin (a model producing NaN) loses too

    def line(self) -> str:
        return (f"self-test: model {self.model_db:.1f} dB vs {self.baseline} {self.baseline_db:.1f} dB on this "
                f"volume ({self.margin:+.1f} dB; {self.direction} {self.scale}, {self.planes})")

    def warning(self) -> str:
        return (f"self-test: the model is {-self.margin:.1f} dB worse than {self.baseline} on this volume "
                f"({self.direction} {self.scale}); its output may be worse than plain {self.baseline} "
                "(--adapt fine-tunes it on this volume, --strict refuses to write)")


def _psnr(pred: Sequence[np.ndarray], truth: Sequence[np.ndarray], peak: float) -> float:
    flat = [torch.from_numpy(np.concatenate([np.ravel(a) for a in arrays]))[None, None, None]
            for arrays in (pred, truth)]
    return float(psnr(flat[0].double(), flat[1].double(), peak))


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
    pred = super_resolve_planes(model, degraded, (X, Y), ref=ref_stack, n_slices=n_slices, options=options,
                                planes=slices)
    base = kspace.zero_fill_upsample(degraded[slices], (X, Y))
    truth = stack[slices]
    return SelfTestResult("in-plane", _scale(factors), _psnr([pred], [truth], peak), "zero-filling",
                          _psnr([base], [truth], peak), f"{len(slices)} of {Z} slices")


def _cubic_along_last(planes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return bicubic_upsample(torch.from_numpy(planes)[:, None], size)[:, 0].numpy()


def _through(volume: np.ndarray, out_shape: Sequence[int], model: torch.nn.Module, plan: SelfTestPlan,
             n_slices: int, ref: np.ndarray | None, options: InferenceOptions, peak: float,
             profile: SliceProfile) -> SelfTestResult | None:
    X, Y, Z = volume.shape
    factor = out_shape[2] / Z
    coarse = profile.coarsen(volume, 2, factor).astype(np.float32)
    if coarse.shape[2] < 2:
        return None
    preds, bases, truths = [], [], []
    for axis, planes in ((0, plan.x_planes), (1, plan.y_planes)):
        stack, truth = np.moveaxis(coarse, axis, 0), np.moveaxis(volume, axis, 0)[planes]
        ref_stack = None if ref is None else np.moveaxis(ref, axis, 0)
        size = truth.shape[1:]
        preds.append(super_resolve_planes(model, stack, size, ref=ref_stack, n_slices=n_slices, options=options,
                                          planes=planes))
        bases.append(_cubic_along_last(np.ascontiguousarray(stack[planes]), size))
        truths.append(truth)
    return SelfTestResult("through-plane", _scale([factor]), _psnr(preds, truths, peak), "cubic interpolation",
                          _psnr(bases, truths, peak),
                          f"{len(plan.x_planes)} of {X} X and {len(plan.y_planes)} of {Y} Y planes")


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
