"""2-D/3-D arrays from and to common image formats: png, jpg, tif, npy, mat, h5, nii, nii.gz."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsr.errors import InputError
from medsr.io.atomic import atomic_path
from medsr.io.nifti import is_nifti, load_nifti, read_volume

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy", ".mat", ".h5", ".hdf5", ".nii", ".nii.gz")


def image_suffix(path: str | Path) -> str | None:
    """The recognised (lower-case) suffix of ``path``, or ``None``."""
    name = str(path).lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), None)


def stem(path: str | Path) -> str:
    """File name without its recognised suffix (``a.nii.gz`` -> ``a``)."""
    name = Path(path).name
    suffix = image_suffix(name)
    return name[: -len(suffix)] if suffix else Path(name).stem


def _single_array(arrays: dict[str, np.ndarray], path: Path) -> np.ndarray:
    if len(arrays) != 1:
        raise InputError(path, f"expected exactly one array, found {sorted(arrays) or 'none'}")
    return next(iter(arrays.values()))


def _read_mat(path: Path) -> np.ndarray:
    import h5py
    import scipy.io

    if h5py.is_hdf5(str(path)):  # MATLAB v7.3 files are HDF5
        return _read_h5(path)
    content = scipy.io.loadmat(str(path))
    arrays = {k: v for k, v in content.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    return _single_array(arrays, path)


def _read_h5(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        arrays: dict[str, np.ndarray] = {}
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return _single_array(arrays, path)


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(str(path))


def read_image(path: str | Path, *, check_finite: bool = True) -> np.ndarray:
    """Read an image or volume as a numpy array in its stored dtype; every failure names the file."""
    path = Path(path)
    suffix = image_suffix(path)
    if suffix is None:
        raise InputError(path, f"unsupported file type (expected one of {', '.join(IMAGE_SUFFIXES)})")
    if not path.exists():
        raise InputError(path, "no such file")
    if is_nifti(path):
        return _stored_dtype(*read_volume(path, ndim=len(_nifti_shape(path))))
    readers = {".npy": np.load, ".mat": _read_mat, ".h5": _read_h5, ".hdf5": _read_h5, ".tif": _read_tiff,
               ".tiff": _read_tiff}
    try:
        data = np.asarray(readers.get(suffix, _read_pillow)(path))
    except InputError:
        raise
    except Exception as err:
        raise InputError(path, f"cannot read image ({type(err).__name__}: {err})") from None
    if data.dtype == object or data.size == 0:
        raise InputError(path, "holds no numeric image data")
    if check_finite and np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise InputError(path, f"{int((~np.isfinite(data)).sum())} non-finite values (NaN or Inf)")
    return data


def _stored_dtype(data: np.ndarray, img: object) -> np.ndarray:
    """NIfTI voxels in their stored integer dtype when the header does not rescale them (so the data-range rules
    are the same as for a PNG or .npy of that dtype); float32 otherwise."""
    stored = img.get_data_dtype()
    slope, inter = img.dataobj.slope, img.dataobj.inter
    if stored.kind in "iub" and slope in (1, None) and inter in (0, None):
        return np.asarray(img.dataobj).reshape(data.shape).astype(stored, copy=False)
    return data


def _nifti_shape(path: Path) -> tuple[int, ...]:
    shape = load_nifti(path).shape
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def write_image(path: str | Path, data: np.ndarray) -> None:
    """Write ``data`` atomically as png, tif or npy; png/tif keep the array's dtype (8/16-bit, float for tif)."""
    path = Path(path)
    suffix = image_suffix(path)
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, data)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(str(tmp), data)
        elif suffix == ".png":
            from PIL import Image

            Image.fromarray(data).save(tmp, format="PNG")
        else:
            raise InputError(path, "output must be .png, .tif or .npy")
