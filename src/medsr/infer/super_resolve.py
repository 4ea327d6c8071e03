"""``medsr sr``: super-resolve a NIfTI file or DICOM series into a NIfTI file whose header matches its voxels.

The input is divided by its robust scale (the rule stored in the weights' meta), super-resolved with
:func:`medsr.infer.volume.super_resolve`, multiplied back, and written as float32 with an affine rescaled by
:func:`medsr.io.nifti.resampled_affine` (same field of view, so volume corners stay within half an output voxel).
A reference volume is resampled through both affines onto each pass's output grid before inference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import nibabel as nib
import numpy as np
from nibabel.affines import voxel_sizes

from medsr.checkpoint import SHIPPED_WEIGHTS, build_from_weights, shipped_weights
from medsr.data.store import robust_scale
from medsr.data.masks import MaskSpec
from medsr.device import resolve_device
from medsr.errors import InputError
from medsr.infer.degradation import check_degradation
from medsr.io.dicom import read_dicom_series
from medsr.infer.guard import Safeguards, guard_model
from medsr.infer.volume import model_slices, super_resolve
from medsr.inference.planes import InferenceOptions
from medsr.intensity import PercentileRule, rule_from_meta
from medsr.io.nifti import is_nifti, read_volume, resampled_affine, write_volume
from medsr.kspace import MAX_SCALE
from medsr.models.base import SRModel, sr_model
from medsr.models.dc import has_data_consistency
from medsr.registry import MODELS
from medsr.resample import MIN_OVERLAP, overlap_fraction, resample_to_grid

MAX_VOXELS = 2**31


@dataclass
class SRReport:
    """What :func:`super_resolve_file` did, for the command to print."""

    output: Path
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_voxel: tuple[float, ...]
    out_voxel: tuple[float, ...]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def default_weights() -> Path:
    """The shipped ``sakg`` weights (:func:`medsr.checkpoint.shipped_weights`), or a clear error."""
    shipped = shipped_weights()
    if shipped is not None:
        return shipped
    raise InputError(
        "--weights",
        f"no weights given and the shipped {SHIPPED_WEIGHTS} is not installed; train a model with "
        "`medsr train demo` (or `medsr demo`) and pass its weights file with --weights FILE",
    )


def parse_values(text: str | Sequence[float] | None, flag: str) -> tuple[float, float, float] | None:
    """``"2"`` or ``"2,2,1"`` (or numbers) as three positive finite floats; None stays None."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise InputError(flag, f"expected a number or three comma-separated numbers, got {text!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(flag, f"expected one or three positive numbers, got {text!r}")
    return values[0], values[1], values[2]


def target_shape(
    shape: Sequence[int],
    voxel: Sequence[float],
    scale: str | Sequence[float] | None = None,
    voxel_size: str | Sequence[float] | None = None,
) -> tuple[int, int, int]:
    """Output shape from per-axis ``scale`` or a target ``voxel_size`` (mm); checks for empty or absurd outputs."""
    if (scale is None) == (voxel_size is None):
        raise InputError("--scale", "give exactly one of --scale and --voxel-size")
    flag = "--scale" if scale is not None else "--voxel-size"
    if scale is not None:
        factors = parse_values(scale, flag)
    else:
        factors = tuple(v / t for v, t in zip(voxel, parse_values(voxel_size, flag)))
    if max(factors) > MAX_SCALE:
        raise InputError(flag, f"per-axis scales {_fmt(factors)} exceed the maximum x{MAX_SCALE:g}")
    out = tuple(int(round(n * f)) for n, f in zip(shape, factors))
    if min(out) < 1:
        raise InputError(flag, f"scales {_fmt(factors)} turn shape {tuple(shape)} into an empty volume {out}")
    if float(np.prod(out, dtype=np.float64)) > MAX_VOXELS:
        raise InputError(flag, f"output shape {out} exceeds {MAX_VOXELS} voxels")
    return out  # type: ignore[return-value]


MM_PER_UNIT = {"mm": 1.0, "meter": 1000.0, "micron": 0.001, "unknown": 1.0}


def voxel_mm(image: nib.Nifti1Image) -> tuple[float, float, float]:
    """Voxel size in millimetres: the affine's column norms in the header's spatial unit (NIfTI xyz units; an
    unknown unit is taken as mm, the NIfTI convention)."""
    unit = image.header.get_xyzt_units()[0]
    return tuple(float(v) * MM_PER_UNIT.get(unit, 1.0) for v in voxel_sizes(image.affine)[:3])  # type: ignore


def _fmt(values: Sequence[float]) -> str:
    return "x".join(f"{v:.4g}" for v in values)


def read_input(path: str | Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A 3-D volume and a NIfTI image carrying its header: a NIfTI file, or a DICOM series directory."""
    path = Path(path)
    if not path.is_dir():
        return read_volume(path)
    data, affine = read_dicom_series(path)
    if not np.isfinite(data).all():
        raise InputError(path, "non-finite voxel values")
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return data, image


METHODS = ("guided", "dtv")


def _model(weights: str | Path | None, method: str | None, ref: object) -> tuple[SRModel, dict[str, Any], Path]:
    """The model, its metadata and where it came from: a weights file (default: the shipped one) or a
    training-free ``method``, which reads no file and needs a reference."""
    if method is None:
        path = Path(weights if weights is not None else default_weights())
        model, meta = build_from_weights(path, task=("sr", "joint"))
        return model, meta, path
    if method not in METHODS:
        raise InputError("--method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    if weights is not None:
        raise InputError("--method", "cannot be combined with --weights: the method has no weights")
    if ref is None:
        raise InputError("--method", f"{method} is reference-guided: give the reference volume with --ref")
    return MODELS.build({"type": method}), {"model": {"type": method}}, Path(f"--method {method}")


def reference_resampler(
    ref_path: str | Path,
    in_shape: Sequence[int],
    in_affine: np.ndarray,
    out_shape: Sequence[int],
    percentile: float,
    notes: list[str],
) -> Callable[[tuple[int, int, int]], np.ndarray]:
    """Read a reference volume and return ``grid_shape -> reference`` resampled (trilinear, through the affines)
    onto the grid of ``grid_shape`` spanning the input's field of view, divided by its robust scale.

    Raises :class:`InputError` when the affines cannot be inverted or the reference covers less than
    :data:`~medsr.resample.MIN_OVERLAP` of the output grid (another field of view or another subject's size: the
    preparers' rule).
    """
    ref, ref_img = read_input(ref_path)
    for name, affine in ((ref_path, ref_img.affine), ("input", in_affine)):
        if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise InputError(name, "affine is singular or non-finite: cannot align the reference")
    out_affine = resampled_affine(in_affine, in_shape, out_shape)
    covered = overlap_fraction(ref.shape, ref_img.affine, out_shape, out_affine)
    if covered == 0:
        raise InputError(ref_path, "does not overlap the input's field of view (check both affines)")
    if covered < MIN_OVERLAP:
        raise InputError(ref_path, f"covers only {covered:.0%} of the input's field of view (at least "
                                   f"{MIN_OVERLAP:.0%} needed): not a reference of this scan (check both affines)")
    ref = ref / robust_scale(ref, percentile)
    notes.append(
        f"reference {Path(ref_path).name} {ref.shape} at {_fmt(voxel_sizes(ref_img.affine))} mm resampled "
        f"trilinearly through both affines onto the output grid; it covers {100 * covered:.1f}% of it "
        "(zero outside)"
    )
    return lambda shape: resample_to_grid(ref, ref_img.affine, shape, resampled_affine(in_affine, in_shape, shape))


def _scale_notes(meta: Mapping[str, Any], shape: Sequence[int], out_shape: Sequence[int]) -> list[str]:
    trained = meta.get("scales")
    if not (isinstance(trained, (list, tuple)) and len(trained) == 2):
        return []
    lo, hi = float(trained[0]), float(trained[1])
    used = [o / n for n, o in zip(shape, out_shape) if o > n]
    outside = [s for s in used if s < lo - 1e-6 or s > hi + 1e-6]
    if not outside:
        return []
    return [f"scale(s) {_fmt(outside)} lie outside the trained range [{lo:g}, {hi:g}]: expect lower quality"]


def super_resolve_file(
    input_path: str | Path,
    output: str | Path,
    *,
    scale: str | Sequence[float] | None = None,
    voxel_size: str | Sequence[float] | None = None,
    ref: str | Path | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    tile: int | None = None,
    tta: bool = False,
    progress: bool = True,
    guards: Safeguards | None = None,
    sampling: MaskSpec | None = None,
    force: bool = False,
    method: str | None = None,
) -> SRReport:
    """Super-resolve ``input_path`` (NIfTI or DICOM directory) into the NIfTI file ``output``; see the module.
    ``sampling``: how the input was undersampled (None: fully sampled), checked against the weights' training
    degradation (:mod:`medsr.infer.degradation`; ``force`` turns a refusal into a note). ``method``: a training-free
    reference-guided model (:data:`METHODS`) instead of weights; it needs ``ref``."""
    if not is_nifti(output):
        raise InputError(output, "output must be a NIfTI file (.nii or .nii.gz)")
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
    if tile is not None and tile < 16:
        raise InputError("--tile", f"must be at least 16 input pixels, got {tile}")
    volume, image = read_input(input_path)
    in_voxel = voxel_mm(image)
    out_shape = target_shape(volume.shape, in_voxel, scale, voxel_size)
    torch_device = resolve_device(device)
    model, meta, path = _model(weights, method, ref)
    if has_data_consistency(model):
        raise InputError(path, "the model has data-consistency layers, which need the measured complex k-space; "
                         "medsr sr reads magnitude images (whose spectrum is not the measurement), so they would do "
                         "nothing: use weights trained without DC (e.g. t2net dc: none)")
    model = sr_model(model, path).to(torch_device)
    rule = rule_from_meta(meta)
    if not isinstance(rule, PercentileRule):
        raise InputError(path, f"normalises intensities by {rule.meta()} (CT denoising weights?); medsr sr needs "
                         "weights trained with the percentile rule")
    percentile = rule.percentile
    if sampling is not None and sampling.kind == "file":
        # A mask file must fit the input's planes (with --mask-grid hr, the output's), --force or not.
        sampling.draw(tuple(out_shape[:2]), tuple(volume.shape[:2]), seed=0)
    notes = check_degradation(meta, sampling, force, path) + _scale_notes(meta, volume.shape, out_shape)
    ref_on_grid = None
    if ref is not None:
        if model.uses_ref:
            ref_on_grid = reference_resampler(ref, volume.shape, image.affine, out_shape, percentile, notes)
        else:
            notes.append(f"model {meta['model'].get('type')} does not read a reference; --ref ignored")
    if volume.min() < 0:  # shifted to start at 0, as in training (PercentileRule)
        notes.append(f"input has negative values: shifted by {-float(volume.min()):g} before normalisation and "
                     "back after")
    options = InferenceOptions(batch_size=batch_size, tile=tile, tta=tta, device=torch_device,
                               progress=progress)
    normalised, restore = rule.normalise(volume)
    guarded = guard_model(normalised, out_shape, model, meta, n_slices=model_slices(model, meta),
                          ref_on_grid=ref_on_grid, options=options, guards=guards or Safeguards(),
                          voxel_z=in_voxel[2], source=input_path)
    notes += guarded.notes
    started = time.perf_counter()
    try:
        result = super_resolve(normalised, out_shape, guarded.model, n_slices=model_slices(model, meta),
                               ref_on_grid=ref_on_grid, options=options)
    except ValueError as err:
        flag = "--scale" if scale is not None else "--voxel-size"
        raise InputError(flag, f"the model cannot do this: {err}") from None
    result = restore(result)
    bad = int(np.count_nonzero(~np.isfinite(result)))
    if bad:
        raise InputError(weights or input_path, f"the model produced {bad} non-finite voxels (NaN or Inf weights, "
                         "or input values too large); nothing written")
    out_affine = resampled_affine(image.affine, volume.shape, out_shape)
    write_volume(output, result, image, affine=out_affine)
    notes += guarded.finish(time.perf_counter() - started)
    out_voxel = tuple(v * o / n for v, o, n in zip(in_voxel, volume.shape, out_shape))
    return SRReport(Path(output), volume.shape, out_shape, in_voxel, out_voxel, notes, guarded.warnings)
