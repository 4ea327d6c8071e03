"""What ``medsr sr`` does between loading the model and running it: adapt the model to the input volume when asked
(:mod:`medsr.infer.adapt`), then run the do-no-harm self-test (:mod:`medsr.infer.selftest`) with the weights that
will be used, warn (or refuse, with ``strict``) when the model loses to plain interpolation, and after the output
is written, report the self-test's cost and save the adapted weights.

When adapting, the in-plane self-test slices are held out of the adaptation pairs (at most a quarter of the Z
slices). The through-plane self-test cannot be held out the same way: its planes cut across every Z slice the
through-plane pairs come from (along another axis, with another degradation), which the note says.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from medsr.checkpoint import save_weights
from medsr.data.store import sha256_file
from medsr.errors import as_number, require
from medsr.infer.adapt import AdaptOptions, adapt_model, adapted_meta
from medsr.infer.selftest import SelfTestResult, plan_self_test, run_self_test
from medsr.infer.volume import InferenceOptions, RefOnGrid, shrink
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


def _self_test(guarded: Guarded, guards: Safeguards, run: Callable[[], list[SelfTestResult]]) -> None:
    started = time.perf_counter()
    try:
        results = run()
        reason = "the volume is too small to degrade further"
    except ValueError as err:
        results, reason = [], f"the model cannot do the degraded problem ({err})"
    guarded.test_seconds = time.perf_counter() - started
    require(bool(results) or not guards.strict, "--strict", f"the self-test could not run: {reason}")
    if not results:
        guarded.notes.append(f"self-test skipped: {reason}")
    for result in results:
        guarded.notes.append(result.line())
        if result.loses:
            require(not guards.strict, "--strict", f"{result.line()}: the model loses; nothing written")
            guarded.warnings.append(result.warning())


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
    :class:`InputError` for bad settings and, with ``guards.strict``, when the model loses."""
    work = shrink(volume, [min(a, b) for a, b in zip(volume.shape, out_shape)])
    profile = _profile(guards, voxel_z)
    guarded = Guarded(model)
    if guards.slice_thickness is not None and out_shape[2] <= work.shape[2]:
        guarded.notes.append("--slice-thickness ignored: no through-plane upscaling")
    plan = plan_self_test(work.shape, out_shape, hold_out=guards.adapt is not None)
    if guards.adapt is not None:
        ref = None if ref_on_grid is None else ref_on_grid(tuple(work.shape))
        held_out = plan.slices if guards.self_test and plan.slices is not None else ()
        guarded.model, report = adapt_model(work, out_shape, model, n_slices=n_slices, ref=ref, held_out=held_out,
                                            profile=profile, options=guards.adapt, device=options.device)
        guarded.notes.append(report.note())
        if guards.self_test and plan.x_planes is not None:
            guarded.notes.append("the through-plane self-test planes cross the Z slices adaptation trained on")
        if guards.save_adapted is not None:
            settings = adapted_meta(meta, report, guards.adapt, _input_sha256(source, volume), Path(source).name,
                                    volume.shape, out_shape, profile)
            guarded.save = lambda: _save(guards.save_adapted, meta, guarded.model, settings)
    if guards.self_test:
        _self_test(guarded, guards, lambda: run_self_test(work, out_shape, guarded.model, plan, n_slices=n_slices,
                                                          ref_on_grid=ref_on_grid, options=options, profile=profile))
    return guarded


def _save(path: Path, meta: Mapping[str, Any], model: torch.nn.Module, settings: Mapping[str, Any]) -> None:
    save_weights(path, meta["model"], model.state_dict(), meta=settings)
