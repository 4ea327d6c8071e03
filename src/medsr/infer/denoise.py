"""``medsr denoise``: denoise a whole CT volume (NIfTI file or DICOM series, HU) into NIfTI or a DICOM series.

The volume is read in HU (DICOM: rescale slope and intercept required and applied) and checked to be CT
(:func:`medsr.ct.units.check_ct`: some air, lung or fat below -200 HU, so MR magnitudes are refused). Its slices
(planes of voxel axes 0 and 1, the axial slices of a DICOM series) go through the 2-D denoiser in batches, in
blended overlapping tiles with ``tile`` (:func:`medsr.inference.denoise.denoise_slices`, the path validation and
the benchmarks use too), in the network normalisation of :mod:`medsr.ct.units`, or (``method`` nlm or bm3d) through a classical denoiser in HU
(:mod:`medsr.classical.restore`: noise PSD from a ``.npy`` file or estimated from the volume); the output is HU on
the input's exact grid: a float32 NIfTI with the input's header and affine, or (output without a NIfTI suffix, DICOM
input) a new DICOM series whose slices copy the input's tags and geometry
(:func:`medsr.io.dicom.write_dicom_like`). Before writing, the method-noise check
(:mod:`medsr.infer.denoise_check`) asks whether the removed residual looks like noise: its verdict is a note, a
failure a warning, or with ``strict`` an error. Nothing is written on error.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from medsr.checkpoint import build_from_weights
from medsr.classical.restore import METHODS, slice_denoiser, volume_psd
from medsr.infer.dose import plane_note, read_ct
from medsr.ct.units import check_ct
from medsr.errors import InputError
from medsr.infer.denoise_check import check_method_noise
from medsr.io.dicom import write_dicom_like
from medsr.infer.super_resolve import resolve_device
from medsr.inference.denoise import denoise_slices
from medsr.inference.planes import InferenceOptions
from medsr.io.nifti import is_nifti, write_volume

SHIPPED_CT_WEIGHTS = "dncnn_ct.pth"  # package data medsr/weights/: the default of medsr denoise


@dataclass
class DenoiseReport:
    output: Path
    shape: tuple[int, ...]
    kind: str  # "nifti" or "dicom"
    model: str
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def default_ct_weights() -> Path:
    """The shipped DnCNN weights (config ct_dncnn_shared, scripts/train_ct_shared.sh), or a clear error."""
    resource = importlib.resources.files("medsr").joinpath("weights").joinpath(SHIPPED_CT_WEIGHTS)
    if resource.is_file():
        return Path(str(resource))
    raise InputError("--weights", f"no weights given and the shipped {SHIPPED_CT_WEIGHTS} is not installed; run "
                     "scripts/train_ct_shared.sh DIR on CT volumes, or train a denoise config (medsr train "
                     "ct_dncnn) and pass --weights runs/ct_dncnn")


def read_psd(path: str | Path) -> torch.Tensor:
    """A noise PSD from a ``.npy`` file (HU^2, square, at least 8 pixels a side, finite, non-negative: the
    convention of :mod:`medsr.classical.noise`), or a clear error."""
    try:
        psd = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read a noise PSD (.npy): {err}") from None
    if psd.ndim != 2 or psd.shape[0] != psd.shape[1] or psd.shape[0] < 8:
        raise InputError(path, f"a noise PSD must be a square array of at least 8x8, got shape {psd.shape}")
    if not np.isfinite(psd).all() or psd.min() < 0 or not psd.max() > 0:
        raise InputError(path, "a noise PSD must be finite, non-negative and not all zero")
    return torch.from_numpy(psd.astype(np.float64))


def learned_denoise(hu: torch.Tensor, weights: str | Path | None, device: str, batch_size: int, tile: int | None,
                    progress: bool) -> tuple[np.ndarray, str]:
    """Slices ``[N, H, W]`` in HU through the 2-D network of ``weights`` (default: the shipped ones); the HU
    result and the model type."""
    from tqdm import tqdm

    net, meta = build_from_weights(weights if weights is not None else default_ct_weights(), task="denoise")
    options = InferenceOptions(batch_size=batch_size, tile=tile, device=resolve_device(device), progress=progress)
    with tqdm(total=hu.shape[0], unit="slice", disable=not progress) as bar:
        return denoise_slices(net, hu, options, bar), str(meta["model"]["type"])


def classical_denoise(src: Path, hu: torch.Tensor, method: str, psd: str | Path | None,
                      progress: bool) -> tuple[np.ndarray, str]:
    """Slices ``[N, H, W]`` in HU by a classical method (:mod:`medsr.classical.restore`); the HU result and the
    method's parameters in words."""
    from tqdm import tqdm

    try:
        noise, described = volume_psd(hu, None if psd is None else read_psd(psd))
        run, parameters = slice_denoiser(method, noise)
    except ValueError as err:
        raise InputError(src, str(err)) from None
    with torch.inference_mode():
        out = [run(x) for x in tqdm(hu, unit="slice", disable=not progress)]
    return torch.stack(out).numpy(), f"{parameters}; {described}"


def denoise_file(input_path: str | Path, output: str | Path, *, method: str = "weights",
                 weights: str | Path | None = None, psd: str | Path | None = None, device: str = "auto",
                 batch_size: int = 8, tile: int | None = None, progress: bool = True, self_test: bool = True,
                 strict: bool = False) -> DenoiseReport:
    """Denoise ``input_path`` into ``output`` (see the module docstring) with the network of ``weights``
    (``method`` "weights") or a classical method (:data:`medsr.classical.restore.METHODS`, noise PSD ``psd`` or
    estimated); ``self_test``: run the method-noise check, ``strict``: refuse when it fails."""
    src, dst = Path(input_path), Path(output)
    kind = "nifti" if is_nifti(dst) else "dicom"
    if method not in ("weights", *METHODS):
        raise InputError("--method", f"one of weights, {', '.join(METHODS)}; got {method!r}")
    if method == "weights" and psd is not None:
        raise InputError("--psd", "a noise PSD is for the classical methods (--method nlm or bm3d)")
    if method != "weights" and weights is not None:
        raise InputError("--weights", f"weights are for --method weights, not {method}")
    if method != "weights" and tile is not None:
        raise InputError("--tile", f"tiles are for --method weights; {method} filters whole slices")
    if kind == "dicom" and not src.is_dir():
        raise InputError(dst, "a DICOM output (a folder) needs a DICOM series input; give a .nii or .nii.gz output")
    if strict and not self_test:
        raise InputError("--strict", "needs the method-noise check (drop --no-self-test)")
    if batch_size < 1:
        raise InputError("--batch-size", f"must be at least 1, got {batch_size}")
    if tile is not None and tile < 32:
        raise InputError("--tile", f"must be at least 32 pixels, got {tile}")
    volume, affine, like = read_ct(src)
    if volume.ndim != 3:
        raise InputError(src, f"expected a 3-D volume, got shape {volume.shape}")
    if not np.isfinite(volume).all():
        raise InputError(src, "non-finite voxel values")
    check_ct(src, volume)
    hu = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, 2, 0), dtype=np.float32))
    if method == "weights":
        planes, model = learned_denoise(hu, weights, device, batch_size, tile, progress)
    else:
        planes, model = classical_denoise(src, hu, method, psd, progress)
    result = np.moveaxis(planes, 0, 2)
    bad = int(np.count_nonzero(~np.isfinite(result)))
    if bad:
        raise InputError(weights if method == "weights" else src,
                         f"the {method} denoiser produced {bad} non-finite voxels; nothing written")
    notes, warnings = [note for note in (plane_note(affine),) if note], []
    if self_test:
        note, warnings = check_method_noise(hu, torch.from_numpy(planes), affine, strict)
        notes.append(note)
    if kind == "nifti":
        if like is None:  # a DICOM series: a plain header in mm
            like = nib.Nifti1Image(np.zeros((1, 1, 1), np.float32), affine)
            like.header.set_xyzt_units("mm")
        write_volume(dst, np.ascontiguousarray(result, dtype=np.float32), like, affine)
    else:
        write_dicom_like(src, dst, result, f"medsr denoise {model.split(':')[0]}")
    return DenoiseReport(dst, tuple(volume.shape), kind, model, notes, warnings)
