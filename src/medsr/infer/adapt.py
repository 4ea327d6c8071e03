"""Self-supervised adaptation of a super-resolution model to the one volume it is about to process.

A copy of the model is fine-tuned (L1 loss, Adam, small learning rate, every layer including the output head kept)
on training pairs the volume makes from itself, for a bounded time, before inference:

* **in-plane** (zero-shot SR, Shocher et al., "Zero-Shot Super-Resolution using Deep Internal Learning", CVPR
  2018): the volume's Z slices are the high-resolution targets and their k-space downsampling by the requested
  scale (:func:`medsr.kspace.downsample`, the acquisition contract) the inputs, with their adjacent slices
  degraded alike; random aligned patches, flips and (for equal scales) 90-degree rotations;
* **through-plane** (Zhao et al., "SMORE: A Self-Supervised Anti-Aliasing and Super-Resolution Algorithm for MRI
  Using Deep Learning", IEEE TMI 2021): the Z slices are at in-plane resolution, so coarsening one in-plane axis
  with the slice profile (:class:`medsr.slice_profile.SliceProfile`, the requested Z factor, the input's relative
  slice thickness) mimics a through-plane plane; both in-plane axes are coarsened (0 and 90 degrees, the coarse
  axis always last as in the through-plane planes of :func:`medsr.infer.volume.super_resolve`, whose fusion of
  the two orthogonal passes is unchanged). The adjacent-slice inputs of a multi-slice model repeat the centre
  slice: at inference the neighbours of a through-plane plane are one in-plane voxel away, the Z slices' own
  neighbours a whole slice away.

Pairs sit on the pixel-centre grid exactly: each scale is taken as a fraction ``q / r`` (denominator at most
:data:`MAX_DENOMINATOR`), the targets cropped to a multiple of ``q`` pixels, so a low-resolution patch starting at
a multiple of ``r`` covers exactly the high-resolution patch starting at the matching multiple of ``q``.
Every batch is a pure function of ``seed`` and the step; the time limit may end training early.

Z slices held out for the self-test (:func:`medsr.infer.selftest.plan_self_test`) are never targets nor neighbour
inputs: the targets keep a gap of ``max(1, n_slices // 2)`` slices (the neighbour radius, at least one) from every
held-out slice (:func:`training_slices`), so no target is a direct neighbour of a held-out slice and no neighbour
window reaches one.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from medsr import kspace
from medsr.errors import InputError, require
from medsr.inference.planes import neighbour_indices
from medsr.models.base import as_image
from medsr.optim import make_optimizer, update
from medsr.slice_profile import SliceProfile

MAX_DENOMINATOR = 8
MIN_SLICES = 3
CONTENT_FLOOR = 0.1
PATCH_TRIES = 8


@dataclass(frozen=True)
class AdaptOptions:
    """Training budget and settings: stop after ``minutes`` (wall clock, pair making included) or ``steps``."""

    minutes: float = 2.0
    steps: int = 5000
    batch_size: int = 4
    patch: int = 48
    lr: float = 3e-4
    seed: int = 0
    progress: bool = True


def lattice(scale: float) -> tuple[int, int]:
    """``scale`` as ``(q, r)``, ``q / r`` its nearest fraction with a denominator of at most MAX_DENOMINATOR."""
    frac = Fraction(scale).limit_denominator(MAX_DENOMINATOR)
    return frac.numerator, frac.denominator


class PatchPairs:
    """Aligned patches of a target stack ``hr [N, H, W]`` and its degraded stack ``lr [N, h, w]``; ``lattices``
    ``((q, r), (q, r))`` per axis with ``H = h q / r``. ``centres`` are the planes used as targets; the model input
    holds ``n_slices`` planes: the neighbours from ``lr`` or, with ``repeat``, the centre plane repeated."""

    def __init__(self, name: str, hr: np.ndarray, lr: np.ndarray, lattices: tuple[tuple[int, int], ...],
                 centres: Sequence[int], n_slices: int, ref: np.ndarray | None, patch: int, repeat: bool = False):
        self.name, self.hr, self.lr, self.ref = name, hr, lr, ref
        self.lattices, self.centres, self.n_slices, self.repeat = lattices, np.asarray(centres), n_slices, repeat
        self.lr_patch = tuple(_lr_patch(patch, n, q, r) for n, (q, r) in zip(lr.shape[1:], lattices))
        self.rotate = lattices[0] == lattices[1] and self.lr_patch[0] == self.lr_patch[1]

    def input_planes(self, z: int) -> list[int]:
        """The planes of ``lr`` that form the model input for the target plane ``z``."""
        if self.repeat:
            return [z] * self.n_slices
        return neighbour_indices(len(self.lr), [z], self.n_slices)[0].tolist()

    def _crop(self, rng: np.random.Generator) -> tuple[int, tuple[slice, slice], tuple[slice, slice]]:
        for _ in range(PATCH_TRIES):
            z = int(rng.choice(self.centres))
            lo, hi = [], []
            for n, p, (q, r) in zip(self.lr.shape[1:], self.lr_patch, self.lattices):
                start = int(rng.integers(0, (n - p) // r + 1)) * r
                lo.append(slice(start, start + p))
                hi.append(slice(start * q // r, (start + p) * q // r))
            if self.hr[z][tuple(hi)].max() >= CONTENT_FLOOR:
                break
        return z, tuple(lo), tuple(hi)

    def batch(self, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(lr [B, S, p, p'], hr [B, 1, P, P'], ref [B, 1, P, P'] | None)`` drawn with ``rng``."""
        lrs, hrs, refs = [], [], []
        for _ in range(size):
            z, lo, hi = self._crop(rng)
            items = [self.lr[self.input_planes(z)][(slice(None), *lo)], self.hr[z][None][(slice(None), *hi)]]
            if self.ref is not None:
                items.append(self.ref[z][None][(slice(None), *hi)])
            flips = tuple(axis for axis in (-2, -1) if rng.random() < 0.5)
            turns = int(rng.integers(0, 4)) if self.rotate else 0
            items = [np.rot90(np.flip(a, flips) if flips else a, turns, axes=(-2, -1)) for a in items]
            lrs.append(items[0])
            hrs.append(items[1])
            refs.append(items[2] if self.ref is not None else None)
        stack = lambda arrays: torch.from_numpy(np.ascontiguousarray(np.stack(arrays), dtype=np.float32))
        return stack(lrs), stack(hrs), None if self.ref is None else stack(refs)


def training_slices(n: int, held_out: Sequence[int], n_slices: int) -> np.ndarray:
    """The Z slices of ``range(n)`` that may serve as targets: farther than ``max(1, n_slices // 2)`` from every
    ``held_out`` slice (all of them when nothing is held out)."""
    held = np.asarray(held_out, dtype=np.int64)
    if not held.size:
        return np.arange(n)
    gap = max(1, n_slices // 2)
    distance = np.abs(np.arange(n)[:, None] - held[None, :]).min(axis=1)
    return np.flatnonzero(distance > gap)


def _lr_patch(patch: int, n: int, q: int, r: int) -> int:
    """Low-resolution patch length: a multiple of ``r`` near ``patch r / q``, at most ``n``."""
    p = max(1, round(patch * r / q / r)) * r
    return min(p, n // r * r)


def _crop_to(array: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """Centre crop of the last ``len(sizes)`` axes."""
    index = [slice(None)] * (array.ndim - len(sizes))
    for n, m in zip(array.shape[-len(sizes):], sizes):
        index.append(slice((n - m) // 2, (n - m) // 2 + m))
    return np.ascontiguousarray(array[tuple(index)])


def _aligned(n: int, scale: float) -> tuple[int, int, tuple[int, int]]:
    """Target length (a multiple of ``q``), degraded length and the lattice of an axis of ``n`` at ``scale``."""
    q, r = lattice(scale)
    return n // q * q, n // q * r, (q, r)


def inplane_pairs(volume: np.ndarray, factors: tuple[float, float], centres: Sequence[int], n_slices: int,
                  ref: np.ndarray | None, patch: int) -> PatchPairs:
    """Zero-shot pairs from the Z slices of ``volume [X, Y, Z]`` downsampled in k-space by ``factors``."""
    stack = np.moveaxis(volume, 2, 0)
    (H, h, ly), (W, w, lx) = _aligned(stack.shape[1], factors[0]), _aligned(stack.shape[2], factors[1])
    require(min(h, w) >= 2, "--adapt", f"slices of {stack.shape[1:]} are too small to degrade by {factors}")
    hr = _crop_to(stack, (H, W))
    lr = np.ascontiguousarray(kspace.downsample(hr, size=(h, w)), dtype=np.float32)
    ref_hr = None if ref is None else _crop_to(np.moveaxis(ref, 2, 0), (H, W))
    return PatchPairs("in-plane", hr, lr, (ly, lx), centres, n_slices, ref_hr, patch)


def through_pairs(volume: np.ndarray, factor: float, profile: SliceProfile, centres: Sequence[int],
                  n_slices: int, ref: np.ndarray | None, patch: int) -> list[PatchPairs]:
    """SMORE pairs: the Z slices of ``volume`` coarsened along Y (0 degrees) and, transposed, along X (90)."""
    pairs = []
    for name, order in (("through-plane 0", (2, 0, 1)), ("through-plane 90", (2, 1, 0))):
        stack = np.transpose(volume, order)
        H, W = stack.shape[1], _aligned(stack.shape[2], factor)[0]
        q, r = lattice(factor)
        hr = _crop_to(stack, (H, W))
        lr = np.ascontiguousarray(profile.coarsen(hr, 2, q / r), dtype=np.float32)
        require(lr.shape[2] >= 2, "--adapt", f"planes of {stack.shape[1:]} are too small to coarsen by {factor:g}")
        ref_hr = None if ref is None else _crop_to(np.transpose(ref, order), (H, W))
        pairs.append(PatchPairs(name, hr, lr, ((1, 1), (q, r)), centres, n_slices, ref_hr, patch, repeat=True))
    return pairs


@dataclass
class AdaptReport:
    """What :func:`adapt_model` did."""

    sources: list[str]
    steps: int
    seconds: float
    stopped_by: str
    loss_before: float
    loss_after: float
    trained_slices: int
    held_out: list[int] = field(default_factory=list)

    def note(self) -> str:
        held = (f", {len(self.held_out)} slice(s) held out for the self-test, with a gap around them"
                if self.held_out else "")
        return (f"adapted to this volume ({', '.join(self.sources)}) for {self.steps} steps in {self.seconds:.0f} s "
                f"({self.stopped_by}); L1 on its own pairs {self.loss_before:.4f} -> {self.loss_after:.4f}; "
                f"trained on {self.trained_slices} slice(s){held}")


def _loss(model: torch.nn.Module, batch: tuple, device: torch.device) -> torch.Tensor:
    lr, hr, ref = (None if t is None else t.to(device) for t in batch)
    return (as_image(model(lr, tuple(hr.shape[-2:]), ref)) - hr).abs().mean()


def _eval_loss(model: torch.nn.Module, batches: list[tuple], device: torch.device) -> float:
    model.eval()
    with torch.no_grad():
        return float(np.mean([_loss(model, b, device).item() for b in batches]))


def adapt_model(
    volume: np.ndarray,
    out_shape: Sequence[int],
    model: torch.nn.Module,
    *,
    n_slices: int = 1,
    ref: np.ndarray | None = None,
    held_out: Sequence[int] = (),
    profile: SliceProfile = SliceProfile(),
    options: AdaptOptions = AdaptOptions(),
    device: torch.device = torch.device("cpu"),
) -> tuple[torch.nn.Module, AdaptReport]:
    """Fine-tune a copy of ``model`` on the normalised ``volume [X, Y, Z]`` (already shrunk to at most
    ``out_shape``) for the directions it is upscaled in; ``ref`` is the reference on the volume's grid (or None),
    ``held_out`` Z slices never serve as targets or inputs (:func:`training_slices`). Returns the adapted copy
    (eval mode) and a report."""
    started = time.perf_counter()
    deadline = started + 60.0 * options.minutes
    X, Y, Z = volume.shape
    require(Z >= MIN_SLICES, "--adapt", f"needs at least {MIN_SLICES} slices along Z, the volume has {Z}")
    centres = training_slices(Z, held_out, n_slices)
    require(centres.size > 0, "--adapt", f"{Z} slices along Z are too few to hold out {len(held_out)} for the "
            "self-test with a gap and adapt on the rest (--no-self-test adapts on all of them, untested)")
    sources: list[PatchPairs] = []
    if out_shape[0] > X or out_shape[1] > Y:
        sources.append(inplane_pairs(volume, (out_shape[0] / X, out_shape[1] / Y), centres, n_slices, ref,
                                     options.patch))
    if out_shape[2] > Z:
        sources += through_pairs(volume, out_shape[2] / Z, profile, centres, n_slices, ref, options.patch)
    require(bool(sources), "--adapt", "nothing to adapt to: the output is not larger than the input")
    trainee = copy.deepcopy(model).to(device)
    params = [p for p in trainee.parameters() if p.requires_grad]
    require(bool(params), "--adapt", f"model {type(model).__name__} has no trainable parameters")
    probe = np.random.default_rng([options.seed, 1])
    held_batches = [s.batch(probe, options.batch_size) for s in sources]
    rng = np.random.default_rng([options.seed, 0])
    try:
        before = _eval_loss(trainee, held_batches, device)
        optimiser = make_optimizer(params, options.lr)
        step, stopped_by = 0, "step limit"
        with tqdm(total=round(deadline - started), unit="s", desc="adapting", disable=not options.progress) as bar:
            trainee.train()
            while step < options.steps:
                if time.perf_counter() >= deadline:
                    stopped_by = "time limit"
                    break
                loss = _loss(trainee, sources[step % len(sources)].batch(rng, options.batch_size), device)
                update(optimiser, None, loss)
                step += 1
                bar.n = min(bar.total, round(time.perf_counter() - started))
                bar.set_postfix(step=step, loss=f"{loss.item():.4f}", refresh=True)
        after = _eval_loss(trainee, held_batches, device)
    except ValueError as err:
        raise InputError("--adapt", f"the model cannot train on this volume's pairs: {err}") from None
    report = AdaptReport([s.name for s in sources], step, time.perf_counter() - started, stopped_by, before, after,
                         len(centres), [int(z) for z in held_out])
    return trainee.eval(), report


def adapted_meta(meta: Mapping[str, Any], report: AdaptReport, options: AdaptOptions, input_sha256: str,
                 input_name: str, in_shape: Sequence[int], out_shape: Sequence[int],
                 profile: SliceProfile) -> dict[str, Any]:
    """The weights' meta with an ``adapted_on`` entry (input hash and every setting), for ``save_weights``."""
    info = {k: v for k, v in meta.items() if k not in ("model", "medsr_version")}
    info["adapted_on"] = {
        "input": input_name, "sha256": input_sha256, "in_shape": list(in_shape), "out_shape": list(out_shape),
        "sources": report.sources, "steps": report.steps, "seconds": round(report.seconds, 1),
        "minutes": options.minutes, "batch_size": options.batch_size, "patch": options.patch, "lr": options.lr,
        "seed": options.seed, "slice_thickness": profile.thickness, "profile": profile.kind,
        "held_out_slices": report.held_out, "loss_before": report.loss_before, "loss_after": report.loss_after,
    }
    return info
