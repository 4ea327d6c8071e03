"""Losses: pixel, SSIM, frequency and k-space, perceptual/Gram on a frozen network, GAN objectives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsr.checkpoint import save_weights
from medsr.kspace import fft2c, ifft2c, pad_kspace
from medsr.losses import WeightedSum
from medsr.losses.gan import AdversarialLoss
from medsr.models.discriminator import PatchDiscriminator
from medsr.registry import LOSSES, MODELS


def _pair(seed=0, shape=(2, 1, 16, 12)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


def test_pixel_losses_match_their_formulas():
    sr, hr = _pair()
    assert LOSSES.build({"type": "l1"})(sr, hr, {}) == pytest.approx(float(np.abs(sr - hr).mean()))
    assert LOSSES.build({"type": "mse"})(sr, hr, {}) == pytest.approx(float(((sr - hr) ** 2).mean()))
    eps = 0.01
    expected = float(np.sqrt((sr.numpy() - hr.numpy()) ** 2 + eps**2).mean())
    assert LOSSES.build({"type": "charbonnier", "eps": eps})(sr, hr, {}) == pytest.approx(expected, rel=1e-5)
    for name in ("l1", "mse", "ssim", "fft"):
        assert float(LOSSES.build({"type": name})(hr, hr, {})) == pytest.approx(0.0, abs=1e-6), name


def test_ssim_loss_matches_scikit_image_and_has_gradients():
    from skimage.metrics import structural_similarity

    sr, hr = _pair(1, (1, 1, 32, 32))
    sr.requires_grad_(True)
    loss = LOSSES.build({"type": "ssim"})(sr, hr, {})
    h = hr[0, 0].double().numpy()
    ref = structural_similarity(sr[0, 0].detach().double().numpy(), h, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=h.max() - h.min())
    assert float(loss) == pytest.approx(1 - ref, abs=1e-5)
    loss.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_fft_loss_is_l1_of_centred_spectra():
    sr, hr = _pair(2)
    ks, kh = (np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
              for x in (sr, hr))
    d = ks - kh
    expected = np.abs(np.stack([d.real, d.imag])).mean()
    assert float(LOSSES.build({"type": "fft"})(sr, hr, {})) == pytest.approx(expected, rel=1e-5)


def test_kspace_loss_ignores_the_band_the_lr_input_holds():
    _, hr = _pair(3, (2, 1, 16, 12))
    lr = torch.zeros(2, 1, 8, 6)
    inside = pad_kspace(torch.randn(2, 1, 8, 6, dtype=torch.complex64), (16, 12))
    sr_inside = ifft2c(fft2c(hr) + inside).real
    k_loss = LOSSES.build({"type": "kspace"})
    assert float(LOSSES.build({"type": "l1"})(sr_inside, hr, {})) > 0.01
    real_part_change = fft2c(sr_inside) - fft2c(hr)
    outside = torch.ones(16, 12, dtype=torch.bool)
    outside[4:12, 3:9] = False
    expected = real_part_change.abs()[..., outside].mean()
    assert float(k_loss(sr_inside, hr, {"lr": lr})) == pytest.approx(float(expected), abs=1e-6)

    pure_inside = ifft2c(fft2c(hr) + inside)
    k = fft2c(pure_inside) - fft2c(hr)
    assert float(k[..., outside].abs().max()) < 1e-5
    noisy = hr + 0.1 * torch.randn_like(hr)
    assert float(k_loss(noisy, hr, {"lr": lr})) > 0.05
    assert float(k_loss(hr, hr, {"lr": torch.zeros(2, 1, 16, 12)})) == 0.0


def test_frequency_losses_stay_float32_under_autocast():
    sr, hr = _pair(4)
    sr = sr.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = LOSSES.build({"type": "kspace"})(sr.bfloat16(), hr.bfloat16(), {"lr": torch.zeros(2, 1, 8, 6)})
        fft = LOSSES.build({"type": "fft"})(sr.bfloat16(), hr, {})
    assert loss.dtype == torch.float32 and fft.dtype == torch.float32
    (loss + fft).backward()
    assert torch.isfinite(sr.grad).all()


@pytest.fixture(scope="module")
def unet_weights(tmp_path_factory):
    torch.manual_seed(0)
    spec = {"type": "unet", "base": 4, "depth": 2, "num_classes": 3}
    net = MODELS.build(spec)
    path = tmp_path_factory.mktemp("unet") / "unet.pth"
    save_weights(path, spec, net.state_dict())
    return path


@pytest.mark.parametrize("kind", ["perceptual", "gram"])
def test_feature_losses_use_a_frozen_network_outside_the_state_dict(unet_weights, kind):
    loss = LOSSES.build({"type": kind, "weights": str(unet_weights), "layer_weights": [1, 0, 1, 0, 1]})
    assert loss.state_dict() == {} and list(loss.parameters()) == []
    assert not any(p.requires_grad for p in loss.net.parameters())
    sr, hr = _pair(5, (1, 1, 20, 18))
    sr.requires_grad_(True)
    assert float(loss(hr, hr, {})) == pytest.approx(0.0, abs=1e-7)
    value = loss(sr, hr, {})
    value.backward()
    assert float(value) > 0 and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.net.parameters())


def test_perceptual_loss_weights_layers_as_configured(unet_weights):
    sr, hr = _pair(6, (1, 1, 16, 16))
    only_first = LOSSES.build({"type": "perceptual", "weights": str(unet_weights), "layer_weights": [1, 0, 0, 0, 0]})
    net = only_first.net
    expected = (net.features(sr)[0] - net.features(hr)[0]).abs().mean()
    assert float(only_first(sr, hr, {})) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="layer_weights"):
        LOSSES.build({"type": "perceptual", "weights": str(unet_weights), "layer_weights": [1]})(sr, hr, {})


def test_gan_objectives():
    ones, zeros = torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)
    ls = AdversarialLoss("lsgan")
    assert float(ls.generator(ones)) == 0.0 and float(ls.discriminator(ones, zeros)) == 0.0
    assert float(ls.discriminator(zeros, ones)) == pytest.approx(1.0)
    hinge = AdversarialLoss("hinge")
    assert float(hinge.discriminator(2 * ones, -2 * ones)) == 0.0
    assert float(hinge.discriminator(zeros, zeros)) == pytest.approx(2.0)
    assert float(hinge.generator(3 * ones)) == -3.0
    logits = torch.randn(2, 1, 3, 3)
    vanilla = AdversarialLoss("vanilla")
    assert float(vanilla.generator(logits)) == pytest.approx(float(-F.logsigmoid(logits).mean()), rel=1e-5)
    with pytest.raises(ValueError):
        AdversarialLoss("wgan")


def test_patch_discriminator_is_registered_and_patchwise():
    d = MODELS.build({"type": "patch_discriminator", "n_feats": 8, "n_layers": 3})
    assert isinstance(d, PatchDiscriminator)
    assert d(torch.rand(2, 1, 64, 48)).shape == (2, 1, 8, 6)


def test_weighted_sum_adds_weighted_terms_and_names_them():
    sr, hr = _pair(7)
    total, terms = WeightedSum([{"type": "l1", "weight": 2.0}, {"type": "mse", "weight": 0.5},
                                {"type": "l1", "weight": 1.0}])(sr, hr, {})
    assert list(terms) == ["l1", "mse", "l1_2"]
    assert float(total) == pytest.approx(float(3 * terms["l1"] + 0.5 * terms["mse"]))
    with pytest.raises(ValueError):
        WeightedSum([])
