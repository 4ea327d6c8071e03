"""World-coordinate resampling between grids (medsr.resample)."""

import numpy as np
import pytest

from medsr.resample import overlap_fraction, resample_to_grid


def _smooth_volume(shape, affine):
    """A smooth function of world coordinates sampled on a grid (so any grid can be compared with it)."""
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = affine[:3, :3] @ idx + affine[:3, 3:4]
    x, y, z = world
    return (np.sin(0.31 * x) * np.cos(0.23 * y) + 0.05 * z).reshape(shape)


def _affine(zooms=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(zooms)
    aff[:3, 3] = origin
    return aff


def test_identical_grids_give_identity():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(6, 7, 5)).astype(np.float32)
    aff = _affine((1.2, 0.9, 3.0), (-4.0, 2.0, 7.0), 0.3)
    for order in (0, 1, 3):
        out = resample_to_grid(data, aff, data.shape, aff, order=order)
        np.testing.assert_allclose(out, data, atol=1e-5)
    assert overlap_fraction(data.shape, aff, data.shape, aff) == 1.0


def test_integer_shift_is_recovered_with_zeros_outside():
    data = np.arange(8 * 6 * 4, dtype=np.float32).reshape(8, 6, 4) + 1
    src = _affine(origin=(10.0, 0.0, 0.0))
    tgt = _affine(origin=(12.0, 0.0, 0.0))  # target voxel i sits on source voxel i + 2
    out = resample_to_grid(data, src, data.shape, tgt, order=1)
    np.testing.assert_allclose(out[:-2], data[2:])
    assert np.all(out[-2:] == 0)
    assert overlap_fraction(data.shape, src, data.shape, tgt) == pytest.approx(6 / 8)


def test_subvoxel_shift_interpolates_linearly():
    data = np.tile(np.arange(10, dtype=np.float32)[:, None, None], (1, 3, 3)) * 2.0
    src = _affine()
    tgt = _affine(origin=(0.25, 0.0, 0.0))
    out = resample_to_grid(data, src, (9, 3, 3), tgt, order=1)
    np.testing.assert_allclose(out[:, 1, 1], 2.0 * (np.arange(9) + 0.25), atol=1e-5)


def test_rotation_and_zoom_recovered_on_smooth_function():
    src = _affine((1.0, 1.0, 2.0), (-16.0, -16.0, -8.0))
    data = _smooth_volume((33, 33, 9), src)
    tgt = _affine((1.5, 0.8, 2.0), (-6.0, -8.0, -4.0), angle=np.pi / 7)
    shape = (8, 14, 5)
    assert overlap_fraction(data.shape, src, shape, tgt) == 1.0
    expected = _smooth_volume(shape, tgt)
    out = resample_to_grid(data, src, shape, tgt, order=3)
    assert np.abs(out - expected).max() < 1e-3
    linear = resample_to_grid(data, src, shape, tgt, order=1)
    assert np.abs(linear - expected).max() < 0.05
    assert np.abs(out - expected).max() < np.abs(linear - expected).max()


def test_labels_keep_dtype_with_nearest():
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 3
    aff = _affine((2.0, 2.0, 2.0))
    out = resample_to_grid(labels, aff, (8, 8, 8), _affine(origin=(-0.5, -0.5, -0.5)), order=0)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, labels.repeat(2, 0).repeat(2, 1).repeat(2, 2))


def test_disjoint_grids_have_no_overlap():
    src = _affine()
    tgt = _affine(origin=(100.0, 0.0, 0.0))
    assert overlap_fraction((4, 4, 4), src, (4, 4, 4), tgt) == 0.0
    assert not resample_to_grid(np.ones((4, 4, 4)), src, (4, 4, 4), tgt).any()


def test_rejects_non_3d():
    with pytest.raises(ValueError):
        resample_to_grid(np.ones((4, 4)), np.eye(4), (4, 4, 4), np.eye(4))
