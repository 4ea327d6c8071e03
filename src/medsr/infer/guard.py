"""What ``medsr sr`` does between loading the model and running it: adapt the model to the input volume when asked
(:mod:`medsr.infer.adapt`), then run the do-no-harm self-test (:mod:`medsr.infer.selftest`) with the weights that
will be used, warn (or refuse, with ``strict``) when the model loses to plain interpolation, and after the output
is written, report the self-test's cost and save the adapted weights.

First the input's own band is checked (:mod:`medsr.infer.band`): where the band the self-test removes is already
empty (an interpolated input), the test of that direction is skipped, adaptation is skipped, one warning says
why, and ``strict`` refuses (the self-test cannot vouch for the model).

When adapting, blocks of Z slices are held out (:func:`medsr.infer.selftest.plan_self_test`), with a gap around them
that adaptation does not train on (:func:`medsr.infer.adapt.training_slices`); the self-test scores the original and
the adapted weights on them only (in-plane: those slices; through-plane: those Z rows of its planes) and keeps the
adapted weights only when they beat the original in every tested direction; ``save_adapted`` is written only then.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from medsr.checkpoint import save_weights
from medsr.data.store import sha256_file
from medsr.errors import as_number, require
from medsr.infer.adapt import AdaptOptions, adapt_model, adapted_meta
from medsr.infer.band import EMPTY_BAND_RATIO, inplane_ratio, interpolated_line, through_ratio
from medsr.infer.selftest import SelfTestPlan, SelfTestResult, plan_self_test, run_self_test
from medsr.infer.volume import RefOnGrid, shrink
from medsr.inference.planes import InferenceOptions
from medsr.slice_profile import PROFILES, SliceProfile


@dataclass(frozen=True)
class Safeguards:
    """The ``medsr sr`` options of this module; ``slice_thickness`` in mm (None: the Z spacing, no gap)."""

    self_test: bool = True
    strict: bool = False
    adapt: AdaptOptions | None = None
    save_adapted: Path | None = None
    slice_thickness: float | None = None
    profile: str = "gaussian"


def parse_safeguards(
    *,
    self_test: bool = True,
    strict: bool = False,
    adapt: bool = False,
    adapt_minutes: object = None,
    save_adapted: str | Path | None = None,
    slice_thickness: object = None,
    profile: str | None = None,
    progress: bool = True,
) -> Safeguards:
    """Check the command-line values; errors name the flag."""
    require(self_test or not strict, "--strict", "needs the self-test (drop --no-self-test)")
    require(adapt or adapt_minutes is None, "--adapt-minutes", "needs --adapt")
    require(adapt or save_adapted is None, "--save-adapted", "needs --adapt")
    options = None
    if adapt:
        minutes = as_number(adapt_minutes, "--adapt-minutes") if adapt_minutes is not None else AdaptOptions.minutes
        require(minutes > 0, "--adapt-minutes", f"must be positive, got {adapt_minutes}")
        options = AdaptOptions(minutes=minutes, progress=progress)
    thickness = as_number(slice_thickness, "--slice-thickness") if slice_thickness is not None else None
    require(thickness is None or thickness > 0, "--slice-thickness", f"must be positive (mm), got {slice_thickness}")
    kind = profile if profile is not None else "gaussian"
    require(kind in PROFILES, "--profile", f"must be one of {', '.join(PROFILES)}, got {profile!r}")
    return Safeguards(self_test, strict, options, None if save_adapted is None else Path(save_adapted), thickness,
                      kind)


@dataclass
class Guarded:
    """The model to run and what to tell the user; :meth:`finish` after the output is written."""

    model: torch.nn.Module
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    test_seconds: float | None = None
    save: Callable[[], None] | None = None

    def finish(self, inference_seconds: float) -> list[str]:
        """Write the adapted weights (when asked); return the notes on cost."""
        if self.save is not None:
            self.save()
        if self.test_seconds is None:
            return []
        share = 100 * self.test_seconds / max(inference_seconds, 1e-9)
        return [f"self-test took {self.test_seconds:.1f} s, {share:.0f}% of the inference time "
                f"({inference_seconds:.1f} s)"]


def _profile(guards: Safeguards, voxel_z: float) -> SliceProfile:
    if guards.slice_thickness is None:
        return SliceProfile(1.0, guards.profile)
    require(guards.slice_thickness <= voxel_z * (1 + 1e-6), "--slice-thickness",
            f"{guards.slice_thickness:g} mm is thicker than the Z spacing ({voxel_z:.4g} mm); overlapping slices "
            "are not modelled")
    return SliceProfile(guards.slice_thickness / voxel_z, guards.profile)


def _input_sha256(source: str | Path, volume: np.ndarray) -> str:
    path = Path(source)
    return sha256_file(path) if path.is_file() else hashlib.sha256(np.ascontiguousarray(volume).tobytes()).hexdigest()


def _interpolated(work: np.ndarray, out_shape: Sequence[int]) -> dict[str, str]:
    """``{direction: warning}`` for the upscaled directions whose outer band is empty (:mod:`medsr.infer.band`)."""
    X, Y, Z = work.shape
    found = {}
    if out_shape[0] > X or out_shape[1] > Y:
        factors = (out_shape[0] / X, out_shape[1] / Y)
        ratio = inplane_ratio(work, factors)
        if ratio is not None and ratio < EMPTY_BAND_RATIO:
            found["in-plane"] = interpolated_line("in-plane", ratio, "x" + ",".join(f"{f:.3g}" for f in factors))
    if out_shape[2] > Z:
        ratio = through_ratio(work, out_shape[2] / Z)
        if ratio is not None and ratio < EMPTY_BAND_RATIO:
            found["through-plane"] = interpolated_line("through-plane", ratio, f"x{out_shape[2] / Z:.3g}")
    return found


def _without(plan: SelfTestPlan, directions: Sequence[str]) -> SelfTestPlan:
    """``plan`` without the tests of ``directions``."""
    if "in-plane" in directions:
        plan = replace(plan, slices=None)
    if "through-plane" in directions:
        plan = replace(plan, x_planes=None, y_planes=None)
    return plan


def _self_test(run: Callable[[], list[SelfTestResult]]) -> tuple[list[SelfTestResult], str]:
    """The results of ``run`` and, for none, why."""
    try:
        return run(), "the volume is too small to degrade further"
    except ValueError as err:
        return [], f"the model cannot do the degraded problem ({err})"


def _report(guarded: Guarded, guards: Safeguards, results: list[SelfTestResult], reason: str) -> None:
    require(bool(results) or not guards.strict, "--strict", f"the self-test could not run: {reason}")
    if not results:
        guarded.notes.append(f"self-test skipped: {reason}")
    for result in results:
        guarded.notes.append(result.line())
        if result.loses:
            require(not guards.strict, "--strict", f"{result.line()}: the model loses; nothing written")
            guarded.warnings.append(result.warning())


def adapted_wins(original: list[SelfTestResult], adapted: list[SelfTestResult]) -> bool:
    """True when the adapted weights score a higher PSNR than the original ones in every tested direction (a NaN
    never wins)."""
    return bool(adapted) and len(adapted) == len(original) and all(
        a.model_db > o.model_db for a, o in zip(adapted, original))


def _choice(keep: bool, original: list[SelfTestResult], adapted: list[SelfTestResult]) -> str:
    if not adapted:
        return "kept the original weights: the self-test could not score the adapted ones"
    scores = "; ".join(f"{a.direction} adapted {a.model_db:.2f} dB vs original {o.model_db:.2f} dB"
                       for a, o in zip(adapted, original))
    return f"kept the {'adapted' if keep else 'original'} weights: on the held-out slices {scores}"


def guard_model(
    volume: np.ndarray,
    out_shape: Sequence[int],
    model: torch.nn.Module,
    meta: Mapping[str, Any],
    *,
    n_slices: int,
    ref_on_grid: RefOnGrid | None,
    options: InferenceOptions,
    guards: Safeguards,
    voxel_z: float,
    source: str | Path,
) -> Guarded:
    """Adapt (when ``guards.adapt``) and self-test ``model`` on the normalised input ``volume``; raises
    :class:`InputError` for bad settings and, with ``guards.strict``, when the model loses or the input looks
    interpolated."""
    work = shrink(volume, [min(a, b) for a, b in zip(volume.shape, out_shape)])
    profile = _profile(guards, voxel_z)
    guarded = Guarded(model)
    if guards.slice_thickness is not None and out_shape[2] <= work.shape[2]:
        guarded.notes.append("--slice-thickness ignored: no through-plane upscaling")
    interpolated = _interpolated(work, out_shape)
    for line in interpolated.values():
        require(not guards.strict, "--strict", f"{line}; nothing written")
        guarded.warnings.append(line)
    adapt = guards.adapt if not interpolated else None
    if guards.adapt is not None and adapt is None:
        guarded.notes.append("--adapt skipped: the input looks interpolated"
                             + (", --save-adapted not written" if guards.save_adapted is not None else ""))
    plan = _without(plan_self_test(work.shape, out_shape, hold_out=adapt is not None and guards.self_test),
                    list(interpolated))

    def test(weights: torch.nn.Module) -> tuple[list[SelfTestResult], str]:
        started = time.perf_counter()
        outcome = _self_test(lambda: run_self_test(work, out_shape, weights, plan, n_slices=n_slices,
                                                   ref_on_grid=ref_on_grid, options=options, profile=profile))
        guarded.test_seconds = (guarded.test_seconds or 0.0) + time.perf_counter() - started
        return outcome

    results, reason = test(model) if guards.self_test else ([], "")
    if adapt is not None:
        ref = None if ref_on_grid is None else ref_on_grid(tuple(work.shape))
        held_out = plan.held_out if plan.held_out is not None else ()
        adapted, report = adapt_model(work, out_shape, model, n_slices=n_slices, ref=ref, held_out=held_out,
                                      profile=profile, options=adapt, device=options.device)
        guarded.notes.append(report.note())
        keep = True
        if guards.self_test:
            adapted_results, adapted_reason = test(adapted)
            keep = adapted_wins(results, adapted_results)
            guarded.notes.append(_choice(keep, results, adapted_results))
            if keep:
                results, reason = adapted_results, adapted_reason
        else:
            guarded.notes.append("the adapted weights are used untested (--no-self-test)")
        if keep:
            guarded.model = adapted
        if guards.save_adapted is not None and keep:
            settings = adapted_meta(meta, report, adapt, _input_sha256(source, volume), Path(source).name,
                                    volume.shape, out_shape, profile)
            guarded.save = lambda: _save(guards.save_adapted, meta, adapted, settings)
        elif guards.save_adapted is not None:
            guarded.warnings.append(f"--save-adapted: {guards.save_adapted} not written: the adapted weights did "
                                    "not beat the original ones on the held-out slices")
    if guards.self_test and (results or not interpolated):
        _report(guarded, guards, results, reason)
    return guarded


def _save(path: Path, meta: Mapping[str, Any], model: torch.nn.Module, settings: Mapping[str, Any]) -> None:
    save_weights(path, meta["model"], model.state_dict(), meta=settings)
