"""A DICOM series directory as one 3-D volume with a RAS affine (as NIfTI stores it).

Slices are sorted by the projection of ``ImagePositionPatient`` on the slice normal (row x column direction);
they must share orientation, size and pixel spacing, be evenly spaced and lie on one line, or the directory is
rejected. Voxel ``(i, j, k)`` is column ``i``, row ``j`` of slice ``k``; the patient (LPS) affine is turned into RAS
by negating its first two rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsr.errors import InputError
from medsr.io.atomic import atomic_dir

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
RESCALE_TAGS = ("RescaleSlope", "RescaleIntercept")  # HU = stored value x slope + intercept
_REQUIRED = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "PixelData")


def _read_images(directory: Path) -> list:
    """Every readable DICOM image (with pixel data) in ``directory``; other files are ignored."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    images = []
    for path in sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "PixelData" in ds:
            images.append(ds)
    if not images:
        raise InputError(directory, "no DICOM images in this directory")
    return images


GEOMETRY_TAGS = {"PixelSpacing": 2, "ImageOrientationPatient": 6, "ImagePositionPatient": 3}


def _check_geometry_tags(path: Path, ds: object) -> None:
    """Each geometry tag holds its number of finite values (and the pixel spacing is positive)."""
    for tag, count in GEOMETRY_TAGS.items():
        try:
            values = np.asarray(getattr(ds, tag), dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise InputError(path, f"{tag} is not numeric") from None
        if values.size != count or not np.isfinite(values).all():
            raise InputError(path, f"{tag} must hold {count} finite numbers, got {values.tolist()}")
        if tag == "PixelSpacing" and (values <= 0).any():
            raise InputError(path, f"PixelSpacing must be positive, got {values.tolist()}")


def _check_one_volume(directory: Path, images: list, required: tuple[str, ...] = ()) -> None:
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in images}
    if len(series) > 1:
        raise InputError(directory, f"holds {len(series)} DICOM series; give a directory with one series")
    for ds in images:
        missing = [tag for tag in (*_REQUIRED, *required) if tag not in ds]
        if missing:
            raise InputError(directory, f"{Path(ds.filename).name} lacks {', '.join(missing)}")
        _check_geometry_tags(Path(ds.filename), ds)
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise InputError(directory, "multi-frame DICOM files are not supported; export single-frame slices")
    first = images[0]
    for ds in images[1:]:
        same = (
            np.allclose(np.asarray(ds.ImageOrientationPatient, float), np.asarray(first.ImageOrientationPatient, float), atol=1e-4)
            and (ds.Rows, ds.Columns) == (first.Rows, first.Columns)
            and np.allclose(np.asarray(ds.PixelSpacing, float), np.asarray(first.PixelSpacing, float), rtol=1e-4)
        )
        if not same:
            raise InputError(directory, "slices differ in orientation, size or pixel spacing: not one volume")


def _slice_step(directory: Path, positions: np.ndarray, normal: np.ndarray, fallback: float) -> np.ndarray:
    """World step between consecutive (sorted) slices; checks even spacing along one line."""
    if len(positions) == 1:
        return normal * fallback
    distances = positions @ normal
    gaps = np.diff(distances)
    spacing = float(np.median(gaps))
    tolerance = 0.01 * abs(spacing) + 1e-3
    if gaps.min() <= 1e-3:
        raise InputError(directory, "two slices share one position: not one volume")
    if np.abs(gaps - spacing).max() > tolerance:
        raise InputError(directory, f"uneven slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm): not one volume")
    step = (positions[-1] - positions[0]) / (len(positions) - 1)
    expected = positions[0] + np.arange(len(positions))[:, None] * step
    if np.linalg.norm(positions - expected, axis=1).max() > tolerance:
        raise InputError(directory, "slice positions do not lie on one line: not one volume")
    return step


def rescale(ds: object) -> tuple[float, float]:
    """A slice's ``(RescaleSlope, RescaleIntercept)``, 1 and 0 where absent; a slope of 0 (every voxel would be
    the intercept) or a non-finite value is an :class:`InputError` naming the file, never read as 1."""
    slope, intercept = getattr(ds, "RescaleSlope", None), getattr(ds, "RescaleIntercept", None)
    try:
        slope = 1.0 if slope is None or slope == "" else float(slope)
        intercept = 0.0 if intercept is None or intercept == "" else float(intercept)
    except (TypeError, ValueError):
        raise InputError(ds.filename, f"RescaleSlope {slope!r} / RescaleIntercept {intercept!r}: not numbers") from None
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0:
        raise InputError(ds.filename, f"RescaleSlope {slope:g}, RescaleIntercept {intercept:g}: the slope must be a "
                         "finite non-zero number")
    return slope, intercept


def _pixels(ds: object) -> np.ndarray:
    """One slice's pixels (rescale slope/intercept applied); a truncated or undecodable file is named."""
    slope, intercept = rescale(ds)
    try:
        return ds.pixel_array.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    except Exception as err:  # pydicom raises many types for truncated data and unsupported transfer syntaxes
        raise InputError(ds.filename, f"cannot decode DICOM pixel data ({type(err).__name__}: {err})") from None


def series_slices(directory: str | Path, required: tuple[str, ...] = ()) -> list:
    """The checked datasets of the one series in ``directory``, in volume order (slice ``k`` of
    :func:`read_dicom_series`)."""
    directory = Path(directory)
    images = _read_images(directory)
    _check_one_volume(directory, images, required)
    orientation = np.asarray(images[0].ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = orientation[:3], orientation[3:]
    if np.abs(np.linalg.norm(orientation.reshape(2, 3), axis=1) - 1).max() > 1e-3 or abs(row_dir @ col_dir) > 1e-3:
        raise InputError(directory, "ImageOrientationPatient is not two orthogonal unit vectors")
    positions = np.asarray([ds.ImagePositionPatient for ds in images], dtype=np.float64)
    order = np.argsort(positions @ np.cross(row_dir, col_dir), kind="stable")
    return [images[i] for i in order]


def read_dicom_series(directory: str | Path, required: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Volume ``[columns, rows, slices]`` (float32, rescale slope/intercept applied) and its 4x4 RAS affine;
    ``required`` names tags that every slice must have besides the geometry and pixel data."""
    directory = Path(directory)
    images = series_slices(directory, required)
    orientation = np.asarray(images[0].ImageOrientationPatient, dtype=np.float64)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.asarray([ds.ImagePositionPatient for ds in images], dtype=np.float64)
    thickness = float(getattr(images[0], "SpacingBetweenSlices", 0) or getattr(images[0], "SliceThickness", 0) or 1)
    step = _slice_step(directory, positions, normal, thickness)
    slices = [_pixels(ds) for ds in images]
    volume = np.stack([s.T for s in slices], axis=2)
    row_spacing, col_spacing = (float(v) for v in images[0].PixelSpacing)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return np.ascontiguousarray(volume), LPS_TO_RAS @ lps


def write_dicom_like(source: str | Path, output: str | Path, volume: np.ndarray, description: str) -> int:
    """Write ``volume`` ``[columns, rows, slices]`` (the layout :func:`read_dicom_series` returns, same shape) as
    a new DICOM series in the folder ``output`` (atomically), slice ``k`` a copy of the source series' slice ``k``
    (geometry, patient and study tags kept) with new pixel data stored through its own rescale slope and
    intercept (rounded, clipped to the stored integer range), uncompressed, a new series and SOP instance UIDs and
    ``description`` appended to the series description. Returns the number of slices written."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    images = series_slices(source)
    if volume.shape != (int(images[0].Columns), int(images[0].Rows), len(images)):
        raise ValueError(f"volume {volume.shape} does not match the series ({len(images)} slices)")
    series_uid = generate_uid()
    with atomic_dir(output) as tmp:
        for k, ds in enumerate(images):
            slope, intercept = rescale(ds)
            signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
            dtype = np.int16 if signed else np.uint16
            info = np.iinfo(dtype)
            stored = np.clip(np.rint((volume[:, :, k].T - intercept) / slope), info.min, info.max).astype(dtype)
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.SamplesPerPixel = 16, 16, 15, 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.PixelData = stored.tobytes()
            ds["PixelData"].VR = "OW"
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.SeriesDescription = f"{getattr(ds, 'SeriesDescription', '')} {description}".strip()[:64]
            pydicom.dcmwrite(tmp / f"{k:04d}.dcm", ds, enforce_file_format=True)
    return len(images)
