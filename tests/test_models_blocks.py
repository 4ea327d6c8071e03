"""Geometry helpers and shared blocks: coordinates, bicubic/zero-fill geometry, LIIF's local ensemble query."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medsr.kspace import downsample
from medsr.models.base import SRModel, bicubic_upsample, make_cell, make_coord
from medsr.errors import InputError
from medsr.models.blocks import RDNEncoder, EDSREncoder, SineLayer, build_encoder, local_samples, query_features
from medsr.registry import MODELS


def smooth_image(H: int, W: int) -> torch.Tensor:
    """A positive image made of a few integer-frequency cosines sampled at pixel centres (band-limited)."""
    y = (torch.arange(H, dtype=torch.float64) + 0.5) / H
    x = (torch.arange(W, dtype=torch.float64) + 0.5) / W
    img = torch.ones(H, W, dtype=torch.float64)
    for ky, kx, a, phase in [(1, 0, 0.3, 0.4), (0, 2, 0.2, 1.0), (2, 1, 0.15, 2.0), (3, 3, 0.1, 0.3)]:
        img = img + a * torch.cos(2 * math.pi * (ky * y[:, None] + kx * x[None, :]) + phase)
    return img


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(b.max() ** 2 / ((a - b) ** 2).mean()))


def test_make_coord_is_pixel_centres_in_y_x_order():
    c = make_coord((3, 4))
    assert c.shape == (3, 4, 2)
    assert torch.allclose(c[:, 0, 0], torch.tensor([-2 / 3, 0.0, 2 / 3]))
    assert torch.allclose(c[0, :, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    cell = make_cell((3, 4), batch=2)
    assert cell.shape == (2, 12, 2) and torch.allclose(cell[1, 5], torch.tensor([2 / 3, 0.5]))


def test_make_coord_matches_interpolate_geometry():
    lr = torch.rand(1, 1, 9, 7)
    coord = make_coord((20, 15))
    sampled = F.grid_sample(lr, coord.flip(-1)[None], mode="bicubic", padding_mode="border", align_corners=False)
    assert torch.allclose(sampled, bicubic_upsample(lr, (20, 15)), atol=1e-5)


@pytest.mark.parametrize("scale", [2.0, (1.5, 2.5), 3.0])
def test_bicubic_on_the_crop_grid_is_accurate_and_beats_a_half_pixel_shift(scale):
    hr = smooth_image(96, 80)
    lr = downsample(hr, scale)[None, None].float()
    up = MODELS.build({"type": "bicubic"})(lr, hr.shape)[0, 0].double()
    h, w = lr.shape[-2:]
    shifted = make_coord(hr.shape) + torch.tensor([1.0 / h, 1.0 / w])
    off = F.grid_sample(lr, shifted.flip(-1)[None], mode="bicubic", padding_mode="border", align_corners=False)
    good, bad = psnr(up, hr), psnr(off[0, 0].double(), hr)
    assert good > 45
    assert good > bad + 10


@pytest.mark.parametrize("hr_shape,scale", [((48, 40), (1.5, 2.5)), ((45, 38), 2.0), ((33, 50), (3.0, 1.7))])
def test_zerofill_exactly_inverts_downsample_of_band_limited_image(hr_shape, scale):
    hr = smooth_image(*hr_shape)
    lr = downsample(hr, scale)
    out = MODELS.build({"type": "zerofill"})(lr[None, None].float(), hr_shape)
    assert out.shape == (1, 1, *hr_shape)
    assert torch.allclose(out[0, 0].double(), hr, atol=1e-5)


def test_local_ensemble_with_identity_decoder_is_bilinear_interpolation():
    feat = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    coord = make_coord((11, 13), dtype=torch.float64).view(1, -1, 2).expand(2, -1, 2)
    out = query_features(feat, coord, lambda q: q.feat, chunk=40)
    grid = coord.flip(-1).view(2, 11, 13, 2)
    ref = F.grid_sample(feat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert torch.allclose(out.permute(0, 2, 1).reshape(2, 3, 11, 13), ref, atol=1e-9)


def test_nearest_query_gives_nearest_code_and_offsets_within_one_pixel():
    feat = torch.randn(1, 2, 4, 6)
    coord = torch.rand(1, 50, 2) * 2 - 1
    codes, rel, weights = local_samples(feat, coord, ensemble=False)
    ref = F.grid_sample(feat, coord.flip(-1)[:, None], mode="nearest", align_corners=False)[:, :, 0]
    assert torch.allclose(codes[:, 0], ref.permute(0, 2, 1))
    assert rel.abs().max() <= 1 and torch.all(weights == 1)


def test_query_cell_is_relative_per_axis_and_chunking_does_not_change_output():
    feat = torch.randn(2, 4, 6, 9)
    B, H, W = 2, 13, 31
    coord = make_coord((H, W)).view(1, -1, 2).expand(B, -1, 2)
    cell = make_cell((H, W), B)
    seen = []

    def decode(q):
        seen.append(q.cell)
        return torch.cat([q.feat.sum(-1, keepdim=True), q.rel, q.cell], -1)

    a = query_features(feat, coord, decode, cell, feat_unfold=True)
    assert torch.allclose(seen[0][0, 0], torch.tensor([2 * 6 / H, 2 * 9 / W]))
    b = query_features(feat, coord, decode, cell, feat_unfold=True, chunk=17)
    assert len(seen) > 2 and torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("encoder", [RDNEncoder(1, 8, 2, 4, 3), EDSREncoder(1, 8, 2)])
def test_encoders_keep_resolution_and_declare_width(encoder):
    assert encoder(torch.rand(2, 1, 7, 5)).shape == (2, 8, 7, 5) and encoder.out_channels == 8


def test_build_encoder_rejects_unknown_type():
    assert isinstance(build_encoder({"type": "edsr", "n_feats": 4, "n_blocks": 1}), EDSREncoder)
    with pytest.raises(InputError, match="unknown model 'encoder/swin'"):
        build_encoder({"type": "swin"})
    with pytest.raises(InputError, match="encoder/edsr.*n_feets"):
        build_encoder({"type": "edsr", "n_feets": 4})


def test_sine_layer_siren_initialisation():
    first, later = SineLayer(10, 64, is_first=True), SineLayer(64, 64, w0=30.0)
    assert first.linear.weight.abs().max() <= 1 / 10
    assert later.linear.weight.abs().max() <= math.sqrt(6 / 64) / 30
    assert later(torch.randn(5, 64)).abs().max() <= 1


def test_check_scale_and_centre_slice():
    class Fixed(SRModel):
        fixed_scales = (2, 4)

    lr = torch.arange(3.0).view(1, 3, 1, 1).expand(1, 3, 5, 6)
    assert torch.all(SRModel.centre_slice(lr) == 1)
    assert SRModel().check_scale(lr, (7, 15)) == (7 / 5, 15 / 6)
    assert Fixed().check_scale(lr, (20, 24)) == (4.0, 4.0)
    for size in [(15, 18), (10, 24), (0, 3)]:
        with pytest.raises(ValueError):
            Fixed().check_scale(lr, size)
