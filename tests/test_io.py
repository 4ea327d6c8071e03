"""medsr.io: atomic writes, NIfTI reading/writing with rescaled affines, image formats."""

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io

from medsr.errors import InputError
from medsr.io.atomic import atomic_dir, atomic_path
from medsr.io.images import image_suffix, read_image, stem, write_image
from medsr.io.nifti import read_volume, resampled_affine, write_volume


def test_atomic_path_renames_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "sub" / "a.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == target.parent and not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.nii.gz"]


def test_atomic_dir(tmp_path):
    target = tmp_path / "store"
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "x").write_text("1")
            raise ValueError
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as tmp:
        (tmp / "x").write_text("1")
    assert (target / "x").read_text() == "1" and len(list(tmp_path.iterdir())) == 1


def _oblique_affine():
    c, s = np.cos(0.4), np.sin(0.4)
    aff = np.eye(4)
    aff[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.8, 1.1, 2.5])
    aff[:3, 3] = [10, -20, 5]
    return aff


@pytest.mark.parametrize("shape,new_shape", [((20, 16, 9), (10, 8, 9)), ((21, 15, 9), (7, 6, 9)),
                                             ((8, 8, 4), (8, 8, 4))])
def test_resampled_affine_is_pixel_centre_geometry(shape, new_shape):
    aff = _oblique_affine()
    new = resampled_affine(aff, shape, new_shape)
    for j in [np.zeros(3), np.asarray(new_shape) - 1, np.array([1.0, 2.0, 0.0])]:
        hr_index = (j + 0.5) * np.asarray(shape) / np.asarray(new_shape) - 0.5
        np.testing.assert_allclose(new[:3, :3] @ j + new[:3, 3], aff[:3, :3] @ hr_index + aff[:3, 3], atol=1e-9)
    zooms = np.sqrt((new[:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(zooms, [0.8, 1.1, 2.5] * np.asarray(shape) / np.asarray(new_shape))


def _nifti(path, data, affine=None, dtype=None):
    img = nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0]) if affine is None else affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    nib.save(img, str(path))
    return img


def test_read_volume_float32_and_trailing_singleton(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, 10)
    nib.save(img, str(tmp_path / "a.nii"))
    vol, loaded = read_volume(tmp_path / "a.nii")
    assert vol.dtype == np.float32 and vol.shape == (2, 3, 4)
    np.testing.assert_allclose(vol, data[..., 0] * 0.5 + 10)
    assert isinstance(loaded, nib.Nifti1Image)


@pytest.mark.parametrize("make,message", [
    (lambda p: _nifti(p, np.ones((4, 4, 4, 2), dtype=np.float32)), "expected a 3-D volume"),
    (lambda p: _nifti(p, np.full((4, 4, 4), np.nan, dtype=np.float32)), "non-finite"),
    (lambda p: p.write_bytes(b"not a nifti"), "not a readable NIfTI"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: None, "no such file"),
])
def test_read_volume_errors_name_the_file(tmp_path, make, message):
    path = tmp_path / "bad.nii.gz"
    make(path)
    with pytest.raises(InputError) as err:
        read_volume(path)
    assert err.value.source == str(path) and message in err.value.message


def test_write_volume_keeps_codes_and_units(tmp_path):
    like = nib.Nifti1Image(np.zeros((4, 4, 2), dtype=np.int16), _oblique_affine())
    like.set_qform(_oblique_affine(), code=1)
    like.set_sform(_oblique_affine(), code=4)
    like.header.set_xyzt_units("mm", "msec")
    like.header.set_slope_inter(2.0, 1.0)
    new_affine = resampled_affine(like.affine, (4, 4, 2), (2, 2, 2))
    out = tmp_path / "o.nii.gz"
    write_volume(out, np.full((2, 2, 2), 1.5), like, new_affine)
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.float32 and img.shape == (2, 2, 2)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 4
    assert img.header.get_xyzt_units() == ("mm", "msec")
    np.testing.assert_allclose(img.affine, new_affine, atol=1e-5)
    np.testing.assert_allclose(np.asarray(img.dataobj), 1.5)
    plain = nib.Nifti1Image(np.zeros((2, 2, 2), dtype=np.float32), np.eye(4))
    plain.header["qform_code"] = plain.header["sform_code"] = 0
    write_volume(tmp_path / "p.nii", np.ones((2, 2, 2)), plain)
    assert int(nib.load(str(tmp_path / "p.nii")).header["sform_code"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.nii.gz", "p.nii"]


def test_image_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "a.png": (rng.uniform(size=(5, 6)) * 255).astype(np.uint8),
        "b.PNG": (rng.uniform(size=(5, 6, 3)) * 255).astype(np.uint8),
        "c.png": (rng.uniform(size=(5, 6)) * 65535).astype(np.uint16),
        "d.tif": rng.normal(size=(5, 6)).astype(np.float32),
        "e.tiff": (rng.uniform(size=(5, 6)) * 4000).astype(np.uint16),
        "f.npy": rng.normal(size=(3, 4, 5)),
    }
    for name, data in arrays.items():
        write_image(tmp_path / name, data)
        back = read_image(tmp_path / name)
        assert back.dtype == data.dtype
        np.testing.assert_array_equal(back, data)


def test_read_mat_h5_nifti(tmp_path):
    data = np.arange(12, dtype=np.float64).reshape(3, 4)
    scipy.io.savemat(str(tmp_path / "a.mat"), {"img": data})
    np.testing.assert_array_equal(read_image(tmp_path / "a.mat"), data)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("group/img", data=data)
    np.testing.assert_array_equal(read_image(tmp_path / "a.h5"), data)
    with h5py.File(tmp_path / "v73.mat", "w") as f:  # MATLAB v7.3 .mat files are HDF5
        f.create_dataset("img", data=data)
    np.testing.assert_array_equal(read_image(tmp_path / "v73.mat"), data)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["x"], f["y"] = data, data
    with pytest.raises(InputError, match="exactly one array"):
        read_image(tmp_path / "two.h5")
    _nifti(tmp_path / "v.nii.gz", np.ones((2, 3, 4), dtype=np.float32))
    assert read_image(tmp_path / "v.nii.gz").shape == (2, 3, 4)
    _nifti(tmp_path / "s.nii", np.ones((2, 3, 1), dtype=np.float32))
    assert read_image(tmp_path / "s.nii").shape == (2, 3)


def test_read_image_errors(tmp_path):
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(tmp_path / "a.bmp")
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(InputError, match="cannot read image"):
        read_image(tmp_path / "bad.png")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.inf]]))
    with pytest.raises(InputError, match="non-finite"):
        read_image(tmp_path / "nan.npy")
    assert read_image(tmp_path / "nan.npy", check_finite=False).shape == (1, 2)
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(InputError, match="no numeric"):
        read_image(tmp_path / "empty.npy")
    with pytest.raises(InputError, match="output must be"):
        write_image(tmp_path / "x.jpg", np.zeros((2, 2), dtype=np.uint8))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.jpg")]


def test_suffix_and_stem():
    assert image_suffix("A/B.NII.GZ") == ".nii.gz" and image_suffix("x.tiff") == ".tiff"
    assert image_suffix("x.txt") is None
    assert stem("dir/IXI002-Guys-0828-T2.nii.gz") == "IXI002-Guys-0828-T2"
    assert stem("scan.v2.png") == "scan.v2" and stem("notes.txt") == "notes"
