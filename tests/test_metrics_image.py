"""PSNR, NRMSE and SSIM against scikit-image, and the data-range rules."""

import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from medsr.errors import InputError
from medsr.metrics.image import crop_border, nmse, nrmse, psnr, resolve_data_range, ssim, ssim_window


def _pair(rng, shape, noise=0.1):
    gt = rng.random(shape)
    return np.clip(gt + noise * rng.standard_normal(shape), 0, 1), gt


def _wang(a, b, data_range, **kw):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=data_range, **kw)


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("shape", [(11, 11), (32, 32), (33, 47), (64, 20), (57, 31)])
def test_ssim_matches_skimage_float64(shape):
    rng = np.random.default_rng(sum(shape))
    pairs = [_pair(rng, shape, noise) for noise in (0.02, 0.1, 0.3)]
    pred = _t(np.stack([p for p, _ in pairs]))[:, None]
    gt = _t(np.stack([g for _, g in pairs]))[:, None]
    ranges = torch.tensor([1.0, 0.8, 2.0], dtype=torch.float64)
    ours = ssim(pred, gt, ranges)
    ref = [_wang(g, p, float(r)) for (p, g), r in zip(pairs, ranges)]
    assert ours.dtype == torch.float64 and ours.shape == (3,)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6, rtol=0)


def test_ssim_matches_skimage_on_integer_images():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (40, 45), dtype=np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
    ours = ssim(_t(pred)[None, None], _t(gt)[None, None], 255.0)
    assert ours.dtype == torch.float64
    assert abs(ours.item() - _wang(gt, pred, 255)) < 1e-6


def test_ssim_rgb_averages_channels_like_skimage():
    rng = np.random.default_rng(2)
    pred, gt = _pair(rng, (30, 26, 3))
    ours = ssim(_t(pred.transpose(2, 0, 1))[None], _t(gt.transpose(2, 0, 1))[None], 1.0)
    assert abs(ours.item() - _wang(gt, pred, 1.0, channel_axis=-1)) < 1e-6


def test_fastmri_preset_volume_slices_match_skimage_defaults():
    rng = np.random.default_rng(3)
    pred, gt = _pair(rng, (4, 20, 24))
    peak = gt.max()
    ref = np.mean([structural_similarity(g, p, data_range=peak) for p, g in zip(pred, gt)])
    ours = ssim(_t(pred)[None, None], _t(gt)[None, None], peak, preset="fastmri", volume_mode="slices")
    assert abs(ours.item() - ref) < 1e-6


def test_ssim_3d_window_matches_skimage_on_volume():
    rng = np.random.default_rng(4)
    pred, gt = _pair(rng, (12, 13, 14))
    ours = ssim(_t(pred)[None, None], _t(gt)[None, None], 1.0, volume_mode="3d")
    assert abs(ours.item() - _wang(gt, pred, 1.0)) < 1e-6


def test_ssim_float32_close_to_float64():
    rng = np.random.default_rng(5)
    pred, gt = (_t(a)[None, None] for a in _pair(rng, (48, 48)))
    assert abs(ssim(pred.float(), gt.float(), 1.0).item() - ssim(pred, gt, 1.0).item()) < 1e-4


def test_small_images_shrink_the_window_and_tiny_ones_are_nan():
    assert ssim_window((8, 9), 11) == 7
    assert ssim_window((10, 40), 11) == 9
    assert ssim_window((3, 3), 7) == 3
    assert ssim_window((2, 50), 7) == 0
    rng = np.random.default_rng(6)
    pred, gt = _pair(rng, (5, 6))
    ours = ssim(_t(pred)[None, None], _t(gt)[None, None], 1.0, preset="fastmri")
    assert abs(ours.item() - structural_similarity(gt, pred, data_range=1.0, win_size=5)) < 1e-6
    tiny = torch.rand(2, 1, 2, 8, dtype=torch.float64)
    assert torch.isnan(ssim(tiny, tiny, 1.0)).all()


def test_identical_images_have_ssim_one():
    x = torch.rand(2, 1, 20, 20, dtype=torch.float64)
    np.testing.assert_allclose(ssim(x, x.clone(), 1.0).numpy(), 1.0, atol=1e-12)


def test_psnr_nrmse_match_skimage_with_per_item_range():
    rng = np.random.default_rng(7)
    pairs = [_pair(rng, (16, 18), n) for n in (0.05, 0.2)]
    pred = _t(np.stack([p for p, _ in pairs]))[:, None]
    gt = _t(np.stack([g for _, g in pairs]))[:, None]
    ranges = torch.tensor([1.0, 3.0], dtype=torch.float64)
    np.testing.assert_allclose(psnr(pred, gt, ranges).numpy(),
                               [peak_signal_noise_ratio(g, p, data_range=float(r)) for (p, g), r in zip(pairs, ranges)])
    np.testing.assert_allclose(nrmse(pred, gt).numpy(), [normalized_root_mse(g, p) for p, g in pairs])
    np.testing.assert_allclose(nmse(pred, gt).numpy(), [normalized_root_mse(g, p) ** 2 for p, g in pairs])


def test_psnr_volume_is_per_volume():
    rng = np.random.default_rng(8)
    pred, gt = _pair(rng, (3, 10, 12))
    ours = psnr(_t(pred)[None, None], _t(gt)[None, None], 1.0)
    assert abs(ours.item() - 10 * np.log10(1.0 / mean_squared_error(gt, pred))) < 1e-9


def test_masked_metrics_use_only_foreground():
    rng = np.random.default_rng(9)
    pred, gt = _pair(rng, (24, 30))
    mask = np.zeros(gt.shape, bool)
    mask[4:20, 10:28] = True
    tp, tg, tm = _t(pred)[None, None], _t(gt)[None, None], _t(mask)[None, None]
    mse = np.mean((pred[mask] - gt[mask]) ** 2)
    assert abs(psnr(tp, tg, 1.0, mask=tm).item() - 10 * np.log10(1 / mse)) < 1e-9
    _, full_map = _wang(gt, pred, 1.0, full=True)
    assert abs(ssim(tp, tg, 1.0, mask=tm).item() - full_map[5:-5, 5:-5][mask[5:-5, 5:-5]].mean()) < 1e-6
    assert abs(ssim(tp, tg, 1.0, mask=torch.ones_like(tm)).item() - ssim(tp, tg, 1.0).item()) < 1e-12


def test_crop_border_removes_in_plane_pixels():
    x = torch.arange(2 * 3 * 8 * 9).reshape(1, 2, 3, 8, 9)
    assert crop_border(x, 2).shape == (1, 2, 3, 4, 5)
    assert torch.equal(crop_border(x, 2)[..., 0, 0], x[..., 2, 2])
    assert crop_border(x, 0) is x


def test_resolve_data_range_rules():
    gt = torch.tensor([[0.5, 2.0], [-1.0, 1.0]], dtype=torch.float32).view(2, 1, 1, 2)
    assert resolve_data_range("gt-range", gt, np.float32).tolist() == [1.5, 2.0]
    assert resolve_data_range("gt-max", gt, np.float32).tolist() == [2.0, 1.0]
    assert resolve_data_range("2.5", gt, np.float32).tolist() == [2.5, 2.5]
    assert resolve_data_range("dtype", gt, np.uint8).tolist() == [255.0, 255.0]
    assert resolve_data_range("dtype", gt, np.int16).tolist() == [65535.0, 65535.0]
    assert resolve_data_range("dtype", gt, torch.uint16).tolist() == [65535.0, 65535.0]
    for bad in ("dtype", "abc", "-1", "nan"):
        with pytest.raises(InputError):
            resolve_data_range(bad, gt, np.float32)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        psnr(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), 1.0)


def test_cpu_chunks_give_the_same_values(monkeypatch):
    import medsr.metrics.image as image

    torch.manual_seed(0)
    pred, gt = torch.rand(5, 2, 20, 24, dtype=torch.float64), torch.rand(5, 2, 20, 24, dtype=torch.float64)
    mask = torch.rand(5, 1, 20, 24) > 0.3
    ranges = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    whole = [psnr(pred, gt, ranges, mask=mask), ssim(pred, gt, ranges, mask=mask), nmse(pred, gt, mask=mask)]
    monkeypatch.setattr(image, "_CPU_CHUNK", 1000)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    chunked = [psnr(pred, gt, ranges, mask=mask), ssim(pred, gt, ranges, mask=mask), nmse(pred, gt, mask=mask)]
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    singles = torch.cat([ssim(pred[i:i + 1], gt[i:i + 1], ranges[i], mask=mask[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(chunked[1], singles, rtol=1e-12, atol=1e-12)
