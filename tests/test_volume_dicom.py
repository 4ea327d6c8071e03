"""DICOM series directories as volumes: slice order, LPS -> RAS affine, rescaling, and series that are not one
volume."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medsr.models.bicubic  # noqa: F401  (registers "bicubic")
from medsr.checkpoint import save_weights
from medsr.cli import main
from medsr.errors import InputError
from medsr.io.dicom import read_dicom_series

_C, _S, _c, _s = np.cos(0.3), np.sin(0.3), np.cos(0.2), np.sin(0.2)
ROTATION = np.array([[_C, -_S, 0], [_S, _C, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, _c, -_s], [0, _s, _c]])
ROW_DIR, COL_DIR, NORMAL = ROTATION.T  # oblique, orthonormal
ORIGIN = np.array([-40.0, 25.0, 12.0])
ROW_SPACING, COL_SPACING, SLICE_GAP = 0.9, 0.7, 3.0


def write_slice(path: Path, pixels: np.ndarray, position, series_uid: str, slope: float = 1.0, intercept: float = 0.0):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.Modality = series_uid, "MR"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [ROW_SPACING, COL_SPACING]
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in (*ROW_DIR, *COL_DIR)]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_series(folder: Path, n: int = 4, gaps=None, uids=None) -> list[np.ndarray]:
    """``n`` slices of 6 rows x 5 columns along NORMAL, written in shuffled order under shuffled names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    slices = [rng.integers(0, 1000, size=(6, 5)) for _ in range(n)]
    offsets = np.concatenate([[0.0], np.cumsum(gaps if gaps is not None else [SLICE_GAP] * (n - 1))])
    for name, k in zip(rng.permutation(n), rng.permutation(n)):
        uid = uids[k] if uids else "1.2.3.4"
        write_slice(folder / f"im{name}.dcm", slices[k], ORIGIN + offsets[k] * NORMAL, uid, slope=2.0, intercept=-5.0)
    (folder / "notes.txt").write_text("not a DICOM file")
    return slices


def test_series_is_sorted_rescaled_and_gets_the_ras_affine(tmp_path):
    slices = write_series(tmp_path / "series")
    volume, affine = read_dicom_series(tmp_path / "series")
    assert volume.shape == (5, 6, 4)
    for k, pixels in enumerate(slices):
        np.testing.assert_allclose(volume[:, :, k], pixels.T * 2.0 - 5.0)
    lps = np.array([-1.0, -1.0, 1.0])
    for i, j, k in [(0, 0, 0), (4, 0, 1), (0, 5, 3), (4, 5, 2)]:
        world = ORIGIN + i * COL_SPACING * ROW_DIR + j * ROW_SPACING * COL_DIR + k * SLICE_GAP * NORMAL
        np.testing.assert_allclose(affine @ [i, j, k, 1.0], [*(lps * world), 1.0], atol=1e-6)


def test_sr_reads_a_dicom_directory(tmp_path):
    write_series(tmp_path / "series")
    save_weights(tmp_path / "bicubic.pth", {"type": "bicubic"}, {})
    out = tmp_path / "sr.nii.gz"
    assert main(["sr", str(tmp_path / "series"), str(out), "--scale", "2,2,1", "--weights",
                 str(tmp_path / "bicubic.pth")]) == 0
    image = nib.load(out)
    _, affine = read_dicom_series(tmp_path / "series")
    assert image.shape == (10, 12, 4)
    np.testing.assert_allclose(image.header.get_zooms(), [COL_SPACING / 2, ROW_SPACING / 2, SLICE_GAP], rtol=1e-5)
    centre = affine @ [2.0, 2.5, 1.5, 1.0]  # the field of view's centre stays put
    np.testing.assert_allclose(image.affine @ [4.5, 5.5, 1.5, 1.0], centre, atol=1e-4)


@pytest.mark.parametrize(
    "gaps, uids, message",
    [([3.0, 3.0, 5.0], None, "uneven slice spacing"), ([3.0, 0.0, 3.0], None, "share one position"),
     (None, ["1.1", "1.1", "2.2", "2.2"], "2 DICOM series")],
)
def test_series_that_are_not_one_volume_are_rejected(tmp_path, gaps, uids, message):
    write_series(tmp_path / "series", gaps=gaps, uids=uids)
    with pytest.raises(InputError, match=message):
        read_dicom_series(tmp_path / "series")


def test_directory_without_dicom_is_an_error_through_the_cli(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("hello")
    assert main(["sr", str(tmp_path / "empty"), str(tmp_path / "o.nii.gz"), "--scale", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no DICOM images" in err
    assert not (tmp_path / "o.nii.gz").exists()
