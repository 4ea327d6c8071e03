"""Degrade an image or volume file in k-space: crop to a lower resolution, undersample, add noise.

What is degraded
----------------
* NIfTI volumes and 3-D ``.npy`` arrays: the 2-D planes perpendicular to ``axis`` (default: the last axis), one
  after the other; the length along ``axis`` is kept. The in-plane axes are the two other axes, in order.
* 2-D ``.npy`` arrays and PNG/TIFF images: the image itself; images with 2 to 4 channels (grey+alpha, RGB,
  RGBA) channel by channel.

Scales: ``scale = (first in-plane axis, second in-plane axis)``, i.e. (rows, columns) of each plane; on the
command line ``--scale S`` sets both and ``--scale-y SY`` overrides the first. An axis of N samples keeps
``round(N / s)`` (:func:`medsr.kspace.lr_length`), and must keep at least two.

The undersampling mask (:mod:`medsr.data.masks`) selects columns (phase-encode lines along the second in-plane
axis) or, from a 2-D mask file, k-space samples; it lives on the LR grid (crop, then mask: the default, T2Net's
order) or on the HR grid (mask, then crop), is the same for every plane of a volume (one Cartesian acquisition),
and is seeded by ``seed`` or else by the input file name (:func:`medsr.kspace.seed_from_name`), so a file gets
the same mask on every run. ``phase="smooth-random"`` multiplies each real plane by a smooth random phase
(:func:`medsr.kspace.smooth_random_phase`, seeded like the mask) before sampling and returns magnitudes, so the
conjugate mirrors of unsampled columns carry no information; the printed line gives the nominal acceleration and,
without a phase, the mirror-counted one (:func:`medsr.data.masks.mirror_acceleration`). The noise level is set for the whole file: its SNR is relative to the rms of the whole
clean low-resolution stack.

Outputs: NIfTI as float32 with the affine of the new grid (:func:`medsr.io.nifti.resampled_affine`) and the input
header's codes and units (with a mask, the header description names it and its effective acceleration, and a
JSON comment extension holds :func:`medsr.data.masks.metadata`); ``.npy``/PNG/TIFF in the input's dtype (integers rounded and clipped to their range).
Real inputs give magnitudes, except real inputs with negative values (CT in HU, difference maps), which keep their
sign (the real part); complex ``.npy`` inputs give complex outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medsr import kspace
from medsr.data import masks
from medsr.errors import InputError, as_integer, as_number, require
from medsr.io.images import image_suffix, read_image, write_image
from medsr.io.nifti import is_nifti, read_volume, resampled_affine, write_volume

PICTURE_SUFFIXES = (".png", ".tif", ".tiff")
PNG_DTYPES = (np.uint8, np.uint16)


@dataclass(frozen=True)
class Degradation:
    """What to do to each plane: ``scale`` (rows, columns), an optional mask and an optional noise level."""

    scale: tuple[float, float] = (1.0, 1.0)
    mask: masks.MaskSpec | None = None
    noise_snr_db: float | None = None
    seed: int | None = None
    phase: str = "none"

    def draw_mask(self, plane: tuple[int, int], seed: int) -> np.ndarray | None:
        """The mask (on its grid) for planes of shape ``plane``, or ``None`` without undersampling."""
        if self.mask is None:
            return None
        return self.mask.draw(plane, kspace.lr_shape(plane, self.scale), seed)


def _scale(value: object, flag: str) -> float:
    if value is None:
        return 1.0
    try:
        return kspace.check_scale(as_number(value, flag))
    except ValueError as err:
        raise InputError(flag, str(err)) from None


def parse_degradation(
    scale: object = None,
    scale_y: object = None,
    mask: str | None = None,
    acceleration: object = None,
    center_fraction: object = None,
    noise_snr: object = None,
    seed: object = None,
    mask_grid: object = None,
    mask_file: object = None,
    phase: object = None,
) -> Degradation:
    """Check command-line values (strings or numbers) and build a :class:`Degradation`; errors name the flag."""
    sx = _scale(scale, "--scale")
    sy = _scale(scale_y, "--scale-y") if scale_y is not None else sx
    mask_spec = masks.parse_mask(mask, acceleration, center_fraction, mask_grid, mask_file)
    snr = as_number(noise_snr, "--noise-snr") if noise_snr is not None else None
    seed_value = as_integer(seed, "--seed") if seed is not None else None
    require(seed_value is None or 0 <= seed_value < 2**63, "--seed", f"must be an integer in [0, 2^63), got {seed}")
    require((sy, sx) != (1.0, 1.0) or mask_spec is not None or snr is not None, "--scale",
            "nothing to do: give a scale above 1, a --mask or a --noise-snr")
    phase = "none" if phase is None else phase
    require(phase in kspace.PHASES, "--phase", f"must be one of {', '.join(kspace.PHASES)}, got {phase!r}")
    return Degradation((sy, sx), mask_spec, snr, seed_value, phase)


def degrade_stack(stack: np.ndarray, degradation: Degradation, seed: int) -> np.ndarray:
    """Degrade ``[N, H, W]`` planes together (one mask, one noise level); returns the new ``[N, h, w]`` planes.

    Complex input gives complex64, real input with negative values its real part, other input magnitudes
    (float32).
    """
    complex_in = np.iscomplexobj(stack)
    signed = not complex_in and bool((stack < 0).any())
    data = stack.astype(np.complex64 if complex_in else np.float32, copy=False)
    if degradation.phase != "none":
        data = data * np.exp(1j * kspace.smooth_random_phase(stack.shape[-2:], seed)).astype(np.complex64)
    generator = torch.Generator().manual_seed(seed) if degradation.noise_snr_db is not None else None
    out = kspace.degrade(
        data,
        degradation.scale,
        mask=degradation.draw_mask(stack.shape[-2:], seed),
        mask_grid=degradation.mask.grid if degradation.mask is not None else "lr",
        noise_snr_db=degradation.noise_snr_db,
        generator=generator,
        magnitude=False,
    )
    if complex_in:
        return out.astype(np.complex64)
    return (out.real if signed else np.abs(out)).astype(np.float32)


def _check_size(path: Path, plane: tuple[int, int], degradation: Degradation) -> None:
    for n, s in zip(plane, degradation.scale):
        kept = kspace.lr_length(n, s)
        require(s == 1.0 or kept >= 2, path,
                f"too small: an axis of {n} pixels at scale {s:g} would keep {kept} sample; at least 2 are needed")


def _slice_axis(axis: object, ndim: int) -> int:
    value = as_integer(axis, "--axis")
    require(-ndim <= value < ndim, "--axis", f"must be in [{-ndim}, {ndim - 1}] for a {ndim}-D volume, got {axis}")
    return value % ndim


def _kind(path: Path) -> str:
    if is_nifti(path):
        return "nifti"
    suffix = image_suffix(path)
    if suffix == ".npy":
        return "npy"
    if suffix in PICTURE_SUFFIXES:
        return "picture"
    raise InputError(path, "unsupported file type (expected .nii, .nii.gz, .npy, .png, .tif or .tiff)")


def _restore_dtype(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(data), info.min, info.max).astype(dtype)
    return data.astype(dtype)


def _planes(data: np.ndarray, kind: str, axis: object, path: Path) -> tuple[np.ndarray, int]:
    """The ``[N, H, W]`` stack of planes to degrade and the axis of ``data`` that indexes them."""
    if kind == "picture":
        require(data.ndim == 2 or (data.ndim == 3 and 2 <= data.shape[-1] <= 4), path,
                f"expected a 2-D image or one with 2 to 4 channels, got shape {data.shape}")
    else:
        require(data.ndim in (2, 3), path, f"expected a 2-D image or a 3-D volume, got shape {data.shape}")
    if data.ndim == 2:
        require(axis is None, "--axis", "applies to 3-D volumes only")
        return data[None], 0
    if kind == "picture":
        require(axis is None, "--axis", "applies to 3-D volumes only (this image has channels)")
        return np.moveaxis(data, -1, 0), data.ndim - 1
    slice_axis = _slice_axis(-1 if axis is None else axis, data.ndim)
    return np.moveaxis(data, slice_axis, 0), slice_axis


def _read(path: Path, kind: str) -> tuple[np.ndarray, object]:
    if kind == "nifti":
        return read_volume(path)
    data = read_image(path)
    require(data.dtype.kind in "uifc", path, f"cannot degrade data of type {data.dtype}")
    require(bool(np.isfinite(data).all()), path, "non-finite values (NaN or Inf)")
    return data, None


def _check_output(output: Path, in_kind: str, dtype: np.dtype) -> None:
    out_kind = _kind(output)
    require(out_kind == in_kind, output, f"output must be of the input's kind ({in_kind}), not {out_kind}")
    if image_suffix(output) == ".png":
        require(dtype in PNG_DTYPES, output, f"PNG cannot hold {dtype} data; write a .tif instead")


def degrade_file(
    input_path: str | Path,
    output_path: str | Path,
    degradation: Degradation,
    axis: object = None,
) -> tuple[tuple[int, ...], tuple[int, ...], str | None]:
    """Degrade ``input_path`` into ``output_path`` (written atomically); returns (input shape, output shape, the
    :func:`medsr.data.masks.describe` line of the mask or ``None``).

    ``axis`` (3-D inputs only) is the slice axis; the planes perpendicular to it are degraded.
    """
    src, dst = Path(input_path), Path(output_path)
    kind = _kind(src)
    data, nifti = _read(src, kind)
    _check_output(dst, kind, data.dtype)
    stack, stack_axis = _planes(data, kind, axis, src)
    _check_size(src, stack.shape[-2:], degradation)
    require(degradation.phase == "none" or not (np.iscomplexobj(stack) or (stack < 0).any()), src,
            "--phase applies to magnitude images: this input is complex or has negative values (it has a phase or "
            "a sign of its own)")
    seed = degradation.seed if degradation.seed is not None else kspace.seed_from_name(src.name)
    planes = degrade_stack(stack, degradation, seed)
    out = planes[0] if data.ndim == 2 else np.moveaxis(planes, 0, stack_axis)
    line, description, comment = None, None, None
    if degradation.mask is not None:
        plane = stack.shape[-2:]
        lr_mask = masks.on_lr_grid(degradation.draw_mask(plane, seed), degradation.mask.grid, planes.shape[-2:])
        line = masks.describe(lr_mask, degradation.mask, plane, degradation.phase)
        record = masks.metadata(lr_mask, degradation.mask)
        description = (f"medsr: {record['kind']} mask, {degradation.mask.grid.upper()} grid, {record['sampled']}/"
                       f"{record['size']} on LR, R {record['effective_acceleration']:.2f}")
        comment = json.dumps({"medsr_degradation": {"scale": list(degradation.scale), "seed": seed,
                                                    "phase": degradation.phase, "mask": record}})
    if kind == "nifti":
        write_volume(dst, out, nifti, resampled_affine(nifti.affine, data.shape, out.shape), description=description,
                     comment=comment)
    else:
        write_image(dst, _restore_dtype(out, data.dtype))
    return tuple(data.shape), tuple(out.shape), line
