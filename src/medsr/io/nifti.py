"""NIfTI volumes: careful reading (clear errors) and writing with rescaled affines and kept header codes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from medsr.errors import InputError
from medsr.io.atomic import atomic_path

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | Path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def load_nifti(path: str | Path) -> nib.Nifti1Image:
    """Open a NIfTI file, turning every failure into an :class:`InputError` that names the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a directory, expected a NIfTI file")
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises many types for corrupt files
        raise InputError(path, f"not a readable NIfTI file ({type(err).__name__}: {err})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"not a NIfTI image ({type(img).__name__})")
    return img


def check_header(path: str | Path, img: nib.Nifti1Image) -> None:
    """Refuse what medsr would silently get wrong: complex voxels (medsr reads real images; save the magnitude)
    and an affine (sform/qform) that is non-finite or singular (no geometry to write or compare)."""
    if img.get_data_dtype().kind == "c":
        raise InputError(path, f"complex-valued voxels ({img.get_data_dtype()}): medsr reads real images; save "
                         "the magnitude (abs) instead")
    affine = img.affine
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(path, "the header's affine (sform/qform) is singular or non-finite; fix the header")


def read_volume(path: str | Path, ndim: int = 3) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Read a 3-D volume as float32 (trailing singleton axes dropped); checks dimensionality and finiteness."""
    img = load_nifti(path)
    shape = img.shape
    while len(shape) > ndim and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != ndim:
        raise InputError(path, f"expected a {ndim}-D volume, got shape {tuple(img.shape)}")
    check_header(path, img)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except MemoryError:
        gib = np.prod(shape, dtype=np.float64) * 4 / 2**30
        raise InputError(path, f"declares {'x'.join(map(str, shape))} voxels ({gib:.3g} GiB as float32): "
                               "not enough memory to read them (is the header damaged?)") from None
    except Exception as err:
        raise InputError(path, f"cannot read voxel data ({type(err).__name__}: {err})") from None
    if not np.isfinite(data).all():
        raise InputError(path, f"{int((~np.isfinite(data)).sum())} non-finite voxels (NaN or Inf)")
    return data, img


def resampled_affine(affine: np.ndarray, shape: Sequence[int], new_shape: Sequence[int]) -> np.ndarray:
    """Affine of the same field of view sampled on ``new_shape`` (pixel-centre geometry, centre kept).

    Voxel ``j`` of the new grid sits at old voxel coordinate ``(j + 0.5) * N / n - 0.5`` on each axis, exactly.
    (``nibabel.affines.rescale_affine`` keeps voxel ``(N - 1) // 2`` instead of the centre, which is half a voxel
    off for even sizes.)
    """
    factors = np.asarray(shape[:3], dtype=float) / np.asarray(new_shape[:3], dtype=float)
    out = np.array(affine, dtype=np.float64)
    out[:3, :3] = out[:3, :3] * factors
    out[:3, 3] += np.asarray(affine, dtype=np.float64)[:3, :3] @ (0.5 * factors - 0.5)
    return out


def write_volume(
    path: str | Path,
    data: np.ndarray,
    like: nib.Nifti1Image,
    affine: np.ndarray | None = None,
    description: str | None = None,
    comment: str | None = None,
) -> None:
    """Write float32 ``data`` with ``like``'s header (codes, units) and ``affine``; atomic; slope/intercept reset.
    ``description`` replaces the header's (80 bytes at most); ``comment`` is added as a comment extension."""
    affine = like.affine if affine is None else affine
    header = like.header.copy()
    out = type(like)(np.asarray(data, dtype=np.float32), affine, header)
    out.set_data_dtype(np.float32)
    out.header.set_slope_inter(None, None)
    qcode, scode = int(like.header["qform_code"]), int(like.header["sform_code"])
    if qcode == 0 and scode == 0:
        qcode = scode = 1
    out.set_qform(affine, code=qcode)
    out.set_sform(affine, code=scode)
    out.header.set_xyzt_units(*like.header.get_xyzt_units())
    if description is not None:
        out.header["descrip"] = description.encode()[:80]
    if comment is not None:
        out.header.extensions.append(nib.nifti1.Nifti1Extension("comment", comment.encode()))
    with atomic_path(path) as tmp:
        nib.save(out, str(tmp))


def _grid(img: nib.Nifti1Image) -> tuple[int, int, int]:
    return tuple((list(img.shape[:3]) + [1, 1])[:3])  # type: ignore[return-value]


def on_grid_of(path: str | Path, data: np.ndarray, reference: str | Path | None, atol: float = 1e-3) -> np.ndarray:
    """``data`` (read from NIfTI ``path``) on the voxel grid of the NIfTI ``reference``, so that two volumes are
    compared in world space: unchanged when the grids (shape and affine, to ``atol`` mm) agree, reoriented when
    they agree up to axis order and flips, else an :class:`InputError` (resample first; medsr never scores
    misaligned volumes). Non-NIfTI files carry no geometry and are returned as they are."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    if reference is None or not (is_nifti(path) and is_nifti(reference)):
        return data
    img, ref = load_nifti(path), load_nifti(reference)
    shape, ref_shape = _grid(img), _grid(ref)
    if shape == ref_shape and np.allclose(img.affine, ref.affine, atol=atol):
        return data
    volume = data.reshape(shape) if data.ndim < 3 else data  # a 2-D image is one slice of its grid
    transform = ornt_transform(io_orientation(img.affine), io_orientation(ref.affine))
    moved = apply_orientation(volume, transform)
    affine = img.affine @ inv_ornt_aff(transform, shape)
    if tuple(moved.shape[:3]) != ref_shape or not np.allclose(affine, ref.affine, atol=atol):
        raise InputError(path, f"voxel grid (shape {'x'.join(map(str, shape))}, affine) differs from the reference "
                         f"{reference} beyond axis order and flips: resample it onto the reference grid first")
    return moved.reshape(data.shape) if data.ndim < 3 else np.ascontiguousarray(moved)
