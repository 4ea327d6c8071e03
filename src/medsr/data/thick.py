"""``medsr degrade --slice-thickness``: simulate a thick-slice acquisition of a NIfTI volume along one axis.

Thickness and gap are in mm; the voxel size along ``axis`` is the length of that column of the affine. The new
slices (:func:`medsr.slice_profile.thick_slices`) are ``thickness + gap`` apart, their number rounded so that the
field of view is kept; the output affine is :func:`medsr.io.nifti.resampled_affine` of the new shape. The rules:

* ``thickness >= voxel size`` (a slice cannot be thinner than the voxels it is made of);
* ``0 <= gap < thickness``, and ``thickness + gap > voxel size`` (else nothing changes);
* ``(thickness + gap) / voxel size <= 16`` (:data:`medsr.kspace.MAX_SCALE`) and at least two slices remain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nibabel.affines import voxel_sizes

from medsr.data.degrade import _slice_axis
from medsr.errors import as_number, require
from medsr.io.nifti import is_nifti, read_volume, resampled_affine, write_volume
from medsr.kspace import MAX_SCALE, lr_length
from medsr.slice_profile import PROFILES, thick_slices


@dataclass(frozen=True)
class ThickSlices:
    """Slices of ``thickness`` mm with ``gap`` mm between them, integrated over a ``profile``."""

    thickness: float
    gap: float = 0.0
    profile: str = "gaussian"

    @property
    def spacing(self) -> float:
        return self.thickness + self.gap


def parse_thick_slices(thickness: object, gap: object = None, profile: str | None = None) -> ThickSlices:
    """Check command-line values (strings or numbers); errors name the flag."""
    t = as_number(thickness, "--slice-thickness")
    require(t > 0, "--slice-thickness", f"must be positive (mm), got {thickness}")
    g = as_number(gap, "--slice-gap") if gap is not None else 0.0
    require(0 <= g < t, "--slice-gap", f"must be at least 0 and below the slice thickness {t:g} mm, got {gap}")
    kind = profile if profile is not None else "gaussian"
    require(kind in PROFILES, "--profile", f"must be one of {', '.join(PROFILES)}, got {profile!r}")
    return ThickSlices(t, g, kind)


def check_against_voxel(spec: ThickSlices, voxel: float, n: int, source: str | Path) -> None:
    """Raise :class:`InputError` unless ``spec`` can be simulated from ``n`` voxels of ``voxel`` mm."""
    require(spec.thickness >= voxel * (1 - 1e-6), "--slice-thickness",
            f"{spec.thickness:g} mm is thinner than the voxels ({voxel:.4g} mm) it would be made of")
    require(spec.spacing > voxel * (1 + 1e-6), "--slice-thickness",
            f"slices {spec.thickness:g} mm thick with a {spec.gap:g} mm gap are no coarser than the voxels "
            f"({voxel:.4g} mm): nothing to do")
    ratio = spec.spacing / voxel
    require(ratio <= MAX_SCALE, "--slice-thickness",
            f"a slice spacing of {spec.spacing:g} mm is {ratio:.3g} voxels; at most {MAX_SCALE:g} are supported")
    kept = lr_length(n, ratio)
    require(kept >= 2, source, f"too small: {n} voxels at a spacing of {ratio:.3g} voxels would keep {kept} slice; "
            "at least 2 are needed")


def thick_slice_file(input_path: str | Path, output_path: str | Path, spec: ThickSlices,
                     axis: object = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Write ``input_path`` as thick slices along ``axis`` (default: the last) into ``output_path`` (atomically);
    returns (input shape, output shape)."""
    src, dst = Path(input_path), Path(output_path)
    for path in (src, dst):
        require(is_nifti(path), path, "thick slices need NIfTI files (.nii, .nii.gz): the voxel size in mm comes "
                "from the header")
    data, image = read_volume(src)
    index = _slice_axis(-1 if axis is None else axis, data.ndim)
    voxel = float(voxel_sizes(image.affine)[index])
    check_against_voxel(spec, voxel, data.shape[index], src)
    out = thick_slices(data, index, spec.thickness / voxel, spec.spacing / voxel, spec.profile)
    write_volume(dst, out, image, resampled_affine(image.affine, data.shape, out.shape))
    return tuple(data.shape), tuple(out.shape)
