"""Whole-volume inference: tiles and windows, slice stacks, in-plane and through-plane passes, flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _registered import registered

from medsr.infer.volume import model_slices, shrink, super_resolve
from medsr.inference.planes import InferenceOptions, neighbour_indices, predict_planes
from medsr.inference.tiles import Span, spans, window
from medsr.models.base import SRModel
from medsr.models.bicubic import Bicubic
from medsr.registry import MODELS

QUIET = InferenceOptions(progress=False)


class FirstSlice(SRModel):
    """Nearest-neighbour upsampling of the first slice of the stack (shows which neighbours were fed)."""

    n_slices = 3

    def forward(self, lr, out_size, ref=None):
        return torch.nn.functional.interpolate(lr[:, :1], size=tuple(out_size), mode="nearest")


class Bilinear(SRModel):
    """Bilinear upsampling of the centre slice: exact on linear ramps away from the borders."""

    def forward(self, lr, out_size, ref=None):
        centre = self.centre_slice(lr)
        return torch.nn.functional.interpolate(centre, size=tuple(out_size), mode="bilinear", align_corners=False)


@pytest.fixture(autouse=True, scope="module")
def _test_models():
    with registered(MODELS, {"_test_first_slice": FirstSlice, "_test_bilinear": Bilinear}):
        yield


@pytest.mark.parametrize("n, out_n, tile, overlap", [(100, 200, 64, 16), (150, 975, 64, 16), (257, 514, 64, 8),
                                                     (40, 100, 16, 8), (150, 151, 64, 16)])
def test_spans_align_with_output_grid_and_cover_it(n, out_n, tile, overlap):
    tiles = spans(n, out_n, tile, overlap)
    assert tiles[0].lo == 0 and tiles[-1].hi == n and tiles[-1].out_hi == out_n
    covered = np.zeros(out_n)
    for t in tiles:
        assert t.out_lo * n == t.lo * out_n and t.out_hi * n == t.hi * out_n  # same scale, same grid
        covered[t.out_lo : t.out_hi] += window(t, Span(0, 1, 0, 1, False, False), (out_n / n, 1.0), overlap)[:, 0]
    for a, b in zip(tiles, tiles[1:]):
        assert a.hi - b.lo >= overlap
    assert covered.min() > 0


def test_window_is_zero_on_inner_halo_and_one_inside():
    t = Span(10, 50, 20, 100, True, True)
    w = window(t, t, (2.0, 2.0), 16)
    assert w.shape == (80, 80)
    assert np.all(w[:8] == 0) and np.all(w[:, -8:] == 0)  # halo = 16 // 4 input pixels = 8 output pixels
    assert w[40, 40] == 1.0 and np.all(np.diff(w[8:40, 40]) >= 0)


@pytest.mark.parametrize("shape, out_size", [((3, 40, 44), (80, 88)), ((2, 40, 36), (100, 45))])
def test_tiling_matches_whole_planes_for_a_small_receptive_field(shape, out_size):
    stack = np.random.default_rng(0).random(shape).astype(np.float32)
    whole = predict_planes(Bicubic(), stack, out_size, options=QUIET)
    tiled = predict_planes(Bicubic(), stack, out_size, options=InferenceOptions(tile=16, overlap=8, progress=False))
    assert spans(shape[1], out_size[0], 16, 8)[1:]  # really tiled
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_neighbour_indices_clamp_at_the_ends():
    np.testing.assert_array_equal(neighbour_indices(4, [0, 3], 3), [[0, 0, 1], [2, 3, 3]])


def test_model_slices_from_meta_attribute_or_default():
    assert model_slices(Bicubic(), {"model": {"type": "bicubic"}, "n_adjacent": 2}) == 5
    assert model_slices(FirstSlice(), {"model": {"type": "_test_first_slice"}}) == 3
    assert model_slices(FirstSlice(), {"model": {"type": "_test_first_slice"}, "n_adjacent": 0}) == 1
    assert model_slices(Bicubic(), {"model": {"type": "bicubic"}}) == 1


def test_stack_of_adjacent_slices_is_fed_centred():
    volume = np.arange(4, dtype=np.float32)[None, None, :] * np.ones((6, 5, 1), np.float32)
    out = super_resolve(volume, (12, 10, 4), FirstSlice(), n_slices=3, options=QUIET)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 1, 2])  # plane z sees z - 1 first (clamped at 0)


def _linear(shape, coefficients):
    """``sum_a c_a * t_a`` with ``t_a`` the pixel-centre coordinate of each voxel in [0, 1]."""
    axes = [(np.arange(n) + 0.5) / n for n in shape]
    grids = np.meshgrid(*axes, indexing="ij")
    return sum(c * g for c, g in zip(coefficients, grids)).astype(np.float32)


@pytest.mark.parametrize("out_shape, atol", [((24, 30, 6), 1e-5), ((12, 10, 15), 1e-5), ((24, 20, 12), 1e-5),
                                             ((9, 20, 6), 1e-3)])
def test_in_plane_and_through_plane_keep_a_linear_ramp(out_shape, atol):
    """Exact for upscaling; shrinking an axis (last case) samples the antialiasing filter slightly off-centre."""
    shape, coefficients = (12, 10, 6), (0.3, 0.5, 0.7)
    out = super_resolve(_linear(shape, coefficients), out_shape, Bilinear(), options=QUIET)
    expected = _linear(out_shape, coefficients)
    assert out.shape == out_shape and out.dtype == np.float32
    inner = tuple(slice(3 * o // n, o - 3 * o // n) if o != n else slice(None) for n, o in zip(shape, out_shape))
    np.testing.assert_allclose(out[inner], expected[inner], atol=atol)


def test_flip_averaging_of_a_flip_symmetric_model_changes_nothing():
    volume = np.random.default_rng(1).random((10, 8, 4)).astype(np.float32)
    plain = super_resolve(volume, (20, 16, 4), Bicubic(), options=QUIET)
    flipped = super_resolve(volume, (20, 16, 4), Bicubic(), options=InferenceOptions(tta=True, progress=False))
    np.testing.assert_allclose(flipped, plain, atol=1e-5)


def test_shrink_keeps_constants_and_shapes():
    out = shrink(np.full((10, 8, 6), 3.0, np.float32), (5, 8, 4))
    assert out.shape == (5, 8, 4)
    np.testing.assert_allclose(out, 3.0, rtol=1e-6)
