"""``medsr degrade --dose``: low-dose CT volumes from NIfTI or DICOM, parameters in the header, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import test_volume_dicom

from medsr.cli import main
from medsr.ct.geometry import default_geometry
from medsr.ct.phantom import body_phantom, ellipse_image
from medsr.ct.units import mu_to_hu

PIXEL = 6.0
N = 48


def _ct_volume(slices: int = 2) -> np.ndarray:
    """``[X, Y, slices]`` HU: the body phantom inside a -3024 HU padded field of view."""
    geometry = default_geometry("parallel", (N, N), PIXEL)
    image = mu_to_hu(ellipse_image(body_phantom(0.8), geometry, supersample=2))
    x, y = geometry.pixel_centres(dtype=torch.float64)
    image = torch.where(x**2 + y**2 > (N * PIXEL / 2) ** 2, torch.tensor(-3024.0, dtype=torch.float64), image)
    return np.repeat(image.numpy().T[..., None], slices, axis=2).astype(np.float32)


def _write_nifti(path: Path, volume: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(volume, np.diag([PIXEL, PIXEL, 3.0, 1.0])), str(path))
    return path


def _fail(capsys, argv: list[str], output: Path) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medsr: error: ")
    assert not output.exists()
    return lines[0]


def test_nifti_low_dose_volume_with_parameters_in_the_header(tmp_path: Path, capsys) -> None:
    volume = _ct_volume()
    src = _write_nifti(tmp_path / "ct.nii.gz", volume)
    out = tmp_path / "ld.nii.gz"
    argv = ["degrade", str(src), str(out), "--dose", "0.25", "--geometry", "parallel", "--seed", "4"]
    assert main(argv) == 0
    line = capsys.readouterr().out
    assert "dose 0.25 (real full-dose input: (1/d - 1) x its noise inserted), parallel beam, I0 1e+05" in line
    image = nib.load(str(out))
    low = np.asarray(image.dataobj)
    assert low.dtype == np.float32 and low.shape == volume.shape
    np.testing.assert_allclose(image.affine, np.diag([PIXEL, PIXEL, 3.0, 1.0]))
    parameters = json.loads(image.header.extensions[0].get_content())
    assert parameters["seed"] == 4 and parameters["filter"] == "hann" and parameters["electronic_noise"] == 10
    assert not parameters["noise_free_input"]
    measured = parameters["measured_noise_hu"]
    assert measured["pixels"] > 0 and measured["total"] >= measured["added"] > 1.0  # the phantom has no noise
    assert f"added {measured['added']:.3g} HU, total {measured['total']:.3g} HU" in line
    assert f"dose=0.25 ins I0=1e+05 added={measured['added']:.3g}".encode() in image.header["descrip"].tobytes()
    padding = volume == -3024
    assert np.array_equal(low[padding], volume[padding])
    noise = (low - volume)[~padding]
    assert 1.0 < noise.std() < 500.0
    assert not np.array_equal(low[..., 0], low[..., 1])  # each slice draws its own noise
    again = tmp_path / "again.nii.gz"
    assert main([*argv[:2], str(again), *argv[3:]]) == 0
    assert np.array_equal(np.asarray(nib.load(str(again)).dataobj), low)


def test_calibrated_i0_gives_the_requested_full_dose_water_noise(tmp_path: Path, capsys) -> None:
    """The calibration is checked by simulating the water cylinder at the target dose: within 5% of the model."""
    src = _write_nifti(tmp_path / "ct.nii", _ct_volume(1))
    out = tmp_path / "ld.nii"
    assert main(["degrade", str(src), str(out), "--dose", "0.5", "--calibrate-hu-noise", "12",
                 "--filter", "ram-lak", "--electronic-noise", "0", "--noise-free-input"]) == 0
    parameters = json.loads(nib.load(str(out)).header.extensions[0].get_content())
    assert parameters["water_noise_hu_full_dose"] == pytest.approx(12.0)
    assert parameters["water_noise_hu_at_dose"] == pytest.approx(12.0 * 2**0.5, rel=0.01)
    assert parameters["water_noise_hu_at_dose_simulated"] == pytest.approx(parameters["water_noise_hu_at_dose"],
                                                                           rel=0.05)
    assert parameters["noise_free_input"]
    line = capsys.readouterr().out
    assert "12 HU at full dose" in line and "(noise-free input: whole scan simulated at dose x I0)" in line


def _dicom_series(folder: Path, volume: np.ndarray, rescale: bool, monkeypatch) -> Path:
    import pydicom

    monkeypatch.setattr(test_volume_dicom, "ROW_SPACING", PIXEL)
    monkeypatch.setattr(test_volume_dicom, "COL_SPACING", PIXEL)
    folder.mkdir()
    for k in range(volume.shape[2]):
        path = folder / f"{k}.dcm"
        test_volume_dicom.write_slice(path, volume[..., k].T + 3024, [0.0, 0.0, 3.0 * k], "1.2.3", 1.0, -3024.0)
        if not rescale:
            ds = pydicom.dcmread(path)
            del ds.RescaleSlope, ds.RescaleIntercept
            ds.save_as(path)
    return folder


def test_dicom_series_in_hu(tmp_path: Path, monkeypatch) -> None:
    volume = np.rint(_ct_volume())
    series = _dicom_series(tmp_path / "series", volume, True, monkeypatch)
    out = tmp_path / "ld.nii.gz"
    assert main(["degrade", str(series), str(out), "--dose", "0.5", "--geometry", "parallel", "--seed", "1"]) == 0
    low = np.asarray(nib.load(str(out)).dataobj)
    assert low.shape == volume.shape
    assert np.array_equal(low[volume == -3024], volume[volume == -3024])


def test_dicom_series_without_rescale_tags_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    series = _dicom_series(tmp_path / "series", np.rint(_ct_volume()), False, monkeypatch)
    out = tmp_path / "ld.nii.gz"
    assert "lacks RescaleSlope" in _fail(capsys, ["degrade", str(series), str(out), "--dose", "0.5"], out)


@pytest.mark.parametrize("flags, message", [
    (["--dose", "0"], "--dose: must be in [0.01, 1]"),
    (["--dose", "1.5"], "--dose: must be in [0.01, 1]"),
    (["--dose", "0.5", "--i0", "1e5", "--calibrate-hu-noise", "10"], "exclude each other"),
    (["--dose", "0.5", "--scale", "2"], "--scale: does not combine with --dose"),
    (["--dose", "0.5", "--filter", "hamming"], "--filter: must be one of"),
    (["--geometry", "fan"], "--geometry: needs --dose"),
    (["--noise-free-input"], "--noise-free-input: needs --dose"),
])
def test_bad_flags_are_one_line_errors(tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    src = _write_nifti(tmp_path / "ct.nii.gz", _ct_volume(1))
    out = tmp_path / "ld.nii.gz"
    assert message in _fail(capsys, ["degrade", str(src), str(out), *flags], out)


def test_mr_magnitudes_given_as_hu_are_refused(tmp_path: Path, capsys) -> None:
    mr = np.random.default_rng(0).uniform(0, 90, size=(N, N, 2)).astype(np.float32)
    src = _write_nifti(tmp_path / "t1.nii.gz", mr)
    out = tmp_path / "ld.nii.gz"
    assert "do not look like CT in HU" in _fail(capsys, ["degrade", str(src), str(out), "--dose", "0.5"], out)
