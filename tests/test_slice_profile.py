"""Thick-slice simulation (medsr.slice_profile) against an independent fine-grid scipy computation, and
``medsr degrade --slice-thickness`` (shape, header, affine, bad input)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import voxel_sizes
from scipy import ndimage

from medsr.cli import main
from medsr.slice_profile import SIGMA_PER_FWHM, profile_weights, thick_slices
from _nifti_files import centre, save_nifti

FINE = 1000  # sub-samples per voxel in the reference


def reference(signal: np.ndarray, thickness: float, spacing: float, kind: str) -> np.ndarray:
    """Piecewise-constant signal on a grid ``FINE`` times finer, filtered by scipy (profile truncated to the field
    of view: filter of the zero-padded signal divided by the filter of the ones), read at the slice centres."""
    n = len(signal)
    fine = np.repeat(signal.astype(np.float64), FINE)
    ones = np.ones_like(fine)
    if kind == "gaussian":
        blur = lambda x: ndimage.gaussian_filter1d(x, thickness * SIGMA_PER_FWHM * FINE, mode="constant",
                                                    truncate=8.0)
    else:
        blur = lambda x: ndimage.uniform_filter1d(x, int(round(thickness * FINE)) | 1, mode="constant")
    smooth = blur(fine) / blur(ones)
    n_out = int(np.floor(n / spacing + 0.5))
    centres = (np.arange(n_out) + 0.5) * n / n_out - 0.5
    positions = (np.arange(n * FINE) + 0.5) / FINE - 0.5
    return np.interp(centres, positions, smooth)


@pytest.mark.parametrize("kind", ["gaussian", "rect"])
@pytest.mark.parametrize("thickness,spacing", [(3.0, 3.0), (2.5, 3.0), (4.2, 5.0), (1.0, 2.0)])
def test_matches_fine_grid_reference(kind, thickness, spacing):
    rng = np.random.default_rng(1)
    signal = rng.uniform(0, 1, size=31) + np.linspace(0, 2, 31)
    ours = thick_slices(signal, 0, thickness, spacing, kind)
    np.testing.assert_allclose(ours, reference(signal, thickness, spacing, kind), atol=2e-3)


def test_axis_and_other_axes_untouched():
    rng = np.random.default_rng(2)
    volume = rng.uniform(size=(5, 12, 4)).astype(np.float32)
    out = thick_slices(volume, 1, 3.0, 3.0, "rect")
    assert out.shape == (5, 4, 4) and out.dtype == np.float32
    for i, k in np.ndindex(5, 4):
        np.testing.assert_allclose(out[i, :, k], thick_slices(volume[i, :, k], 0, 3.0, 3.0, "rect"), rtol=1e-6)
    # an integer rect profile of width = spacing averages whole blocks of voxels
    np.testing.assert_allclose(out, volume.reshape(5, 4, 3, 4).mean(axis=2), rtol=1e-5)


def test_weights_rows_are_normalised_and_centred():
    w = profile_weights(40, 8, 5.0, "gaussian")
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    centres = (w * np.arange(40)).sum(axis=1)
    np.testing.assert_allclose(centres[2:-2], ((np.arange(8) + 0.5) * 5 - 0.5)[2:-2], atol=1e-6)
    with pytest.raises(ValueError, match="profile"):
        profile_weights(4, 2, 1.0, "sinc")
    with pytest.raises(ValueError, match="thickness"):
        profile_weights(4, 2, 0.0)


def _nifti(path, data, zooms=(1.0, 1.2, 0.8)):
    return save_nifti(path, data, zooms, [-10.0, 5.0, 3.0])


def test_degrade_slice_thickness_header_affine_and_values(tmp_path, capsys):
    rng = np.random.default_rng(3)
    data = rng.uniform(size=(6, 24, 20)).astype(np.float32)
    src = _nifti(tmp_path / "vol.nii.gz", data)
    out = tmp_path / "thick.nii.gz"
    argv = ["degrade", str(tmp_path / "vol.nii.gz"), str(out), "--slice-thickness", "3", "--slice-gap", "0.9",
            "--axis", "1", "--profile", "rect"]
    assert main(argv) == 0
    assert "6x24x20 -> 6x7x20" in capsys.readouterr().out
    img = nib.load(str(out))
    got = np.asarray(img.dataobj)
    np.testing.assert_allclose(got, thick_slices(data, 1, 3 / 1.2, 3.9 / 1.2, "rect"), rtol=1e-5)
    np.testing.assert_allclose(voxel_sizes(img.affine), (1.0, 1.2 * 24 / 7, 0.8), rtol=1e-6)
    np.testing.assert_allclose(img.header.get_zooms()[:3], voxel_sizes(img.affine), rtol=1e-6)
    np.testing.assert_allclose(centre(img.affine, got.shape), centre(src.affine, data.shape), atol=1e-5)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 2
    assert main(["degrade", str(tmp_path / "vol.nii.gz"), str(tmp_path / "z.nii"), "--slice-thickness", "2.4"]) == 0
    assert nib.load(str(tmp_path / "z.nii")).shape == (6, 24, 7)


@pytest.mark.parametrize("flags,flag", [
    (["--slice-thickness", "0.5"], "--slice-thickness"),  # thinner than the 0.8 mm voxels
    (["--slice-thickness", "0.8"], "--slice-thickness"),  # same as the voxels, no gap: nothing to do
    (["--slice-thickness", "-2"], "--slice-thickness"),
    (["--slice-thickness", "nan"], "--slice-thickness"),
    (["--slice-thickness", "20"], "--slice-thickness"),  # 25 voxels apart
    (["--slice-thickness", "2", "--slice-gap", "-0.1"], "--slice-gap"),
    (["--slice-thickness", "2", "--slice-gap", "2"], "--slice-gap"),
    (["--slice-gap", "1"], "--slice-thickness"),
    (["--slice-thickness", "2", "--profile", "sinc"], "--profile"),
    (["--slice-thickness", "2", "--scale", "2"], "--scale"),
    (["--slice-thickness", "2", "--axis", "3"], "--axis"),
])
def test_bad_slice_options_one_line_exit_2(tmp_path, capsys, flags, flag):
    _nifti(tmp_path / "vol.nii.gz", np.ones((6, 8, 20), np.float32))
    out = tmp_path / "out.nii.gz"
    assert main(["degrade", str(tmp_path / "vol.nii.gz"), str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"medsr: error: {flag}: "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.nii.gz"]


def test_thick_slices_need_nifti_and_enough_slices(tmp_path, capsys):
    np.save(tmp_path / "vol.npy", np.ones((6, 8, 20), np.float32))
    assert main(["degrade", str(tmp_path / "vol.npy"), str(tmp_path / "out.npy"), "--slice-thickness", "2"]) == 2
    assert "NIfTI" in capsys.readouterr().err
    _nifti(tmp_path / "short.nii.gz", np.ones((6, 8, 3), np.float32))
    assert main(["degrade", str(tmp_path / "short.nii.gz"), str(tmp_path / "o.nii.gz"), "--slice-thickness", "2"]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert not (tmp_path / "out.npy").exists() and not (tmp_path / "o.nii.gz").exists()
