"""k-space functions (medsr.kspace) against numpy.fft and their invariants."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsr import kspace


def _band_limited(shape, freqs, rng):
    """A real periodic image made of a few cosines at integer frequencies ``(fy, fx)`` (cycles per field of view),
    returned with a function that evaluates it at any (y, x) in HR pixel coordinates."""
    terms = [(fy, fx, rng.uniform(0.5, 1.0), rng.uniform(0, 2 * np.pi)) for fy, fx in freqs]
    H, W = shape

    def f(y, x):
        return 2.0 + sum(a * np.cos(2 * np.pi * (fy * y / H + fx * x / W) + p) for fy, fx, a, p in terms)

    y, x = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    return f(y, x), f


def test_fft2c_matches_numpy_with_shifts():
    rng = np.random.default_rng(0)
    for shape in [(8, 8), (7, 10), (2, 5, 9)]:
        x = rng.normal(size=shape) + 1j * rng.normal(size=shape)
        want = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        np.testing.assert_allclose(kspace.fft2c(x), want, atol=1e-10)
        want_inv = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        np.testing.assert_allclose(kspace.ifft2c(x), want_inv, atol=1e-10)


def test_dc_sits_at_centre_index():
    k = kspace.fft2c(np.ones((6, 7)))
    assert abs(k[3, 3]) == pytest.approx(math.sqrt(42))
    assert np.abs(k).sum() == pytest.approx(math.sqrt(42))


def test_round_trip_and_parseval():
    rng = np.random.default_rng(1)
    x = torch.randn(3, 11, 12, dtype=torch.float64)
    k = kspace.fft2c(x)
    assert isinstance(k, torch.Tensor) and k.dtype == torch.complex128
    torch.testing.assert_close(kspace.ifft2c(k).real, x)
    torch.testing.assert_close(k.abs().pow(2).sum(), x.pow(2).sum())
    z = rng.normal(size=(9, 6)) + 1j * rng.normal(size=(9, 6))
    np.testing.assert_allclose(kspace.fft2c(kspace.ifft2c(z)), z, atol=1e-10)
    assert np.sum(np.abs(kspace.fft2c(z)) ** 2) == pytest.approx(np.sum(np.abs(z) ** 2))


def test_numpy_in_numpy_out_and_precision():
    x32 = np.ones((4, 4), dtype=np.float32)
    out = kspace.fft2c(x32)
    assert isinstance(out, np.ndarray) and out.dtype == np.complex64
    assert kspace.fft2c(np.ones((4, 4))).dtype == np.complex128
    assert kspace.fft2c(np.ones((4, 4), dtype=np.uint8)).dtype == np.complex64
    half = torch.ones(4, 4, dtype=torch.float16)
    assert kspace.fft2c(half).dtype == torch.complex64
    assert isinstance(kspace.downsample(np.ones((8, 8)), 2), np.ndarray)
    assert isinstance(kspace.downsample(torch.ones(8, 8), 2), torch.Tensor)


@pytest.mark.parametrize("shape,scale", [((64, 48), 2), ((64, 48), 3.3), ((37, 50), (1.7, 4.0)), ((16, 16), 16),
                                         ((30, 31), (2.5, 1.0))])
def test_downsample_keeps_rounded_size_and_mean(shape, scale):
    rng = np.random.default_rng(2)
    image = rng.uniform(0.5, 1.5, size=shape)
    sy, sx = (scale, scale) if np.ndim(scale) == 0 else scale
    want = (int(math.floor(shape[0] / sy + 0.5)), int(math.floor(shape[1] / sx + 0.5)))
    assert kspace.lr_shape(shape, scale) == want
    lr = kspace.downsample(image, scale, magnitude=False)
    assert lr.shape == want
    assert lr.mean().real == pytest.approx(image.mean(), rel=1e-9)
    assert abs(lr.mean().imag) < 1e-9


def test_lr_length_rounds_halves_up_and_numpy_scalars():
    assert kspace.lr_length(5, 2) == 3
    assert kspace.lr_length(7, 2) == 4
    assert kspace.lr_length(3, 16) == 1
    assert kspace.lr_shape((10, 10), np.float32(2.5)) == (4, 4)
    assert kspace.lr_shape((10, 10), np.array([2.0, 5.0])) == (5, 2)
    for bad in (0.5, 17, float("nan"), "abc"):
        with pytest.raises(ValueError):
            kspace.lr_length(10, bad)


@pytest.mark.parametrize("shape,lr", [((48, 40), (24, 20)), ((45, 52), (17, 29)), ((32, 33), (13, 12))])
def test_band_limited_image_sampled_exactly_on_pixel_centre_grid(shape, lr):
    rng = np.random.default_rng(3)
    freqs = [(1, 2), (3, -1), (0, 4), (-5, 3)]
    assert all(abs(fy) < lr[0] / 2 and abs(fx) < lr[1] / 2 for fy, fx in freqs)
    image, f = _band_limited(shape, freqs, rng)
    out = kspace.downsample(image, size=lr, magnitude=False)
    (H, W), (h, w) = shape, lr
    y = (np.arange(h)[:, None] + 0.5) * H / h - 0.5
    x = (np.arange(w)[None, :] + 0.5) * W / w - 0.5
    np.testing.assert_allclose(out.real, f(y, x), atol=1e-9)
    np.testing.assert_allclose(out.imag, 0, atol=1e-9)


def test_band_limited_image_survives_crop_and_zero_fill():
    rng = np.random.default_rng(4)
    image, _ = _band_limited((40, 36), [(2, 3), (-4, 1), (6, -5)], rng)
    for lr in [(20, 18), (15, 13), (14, 17)]:
        low = kspace.downsample(image, size=lr, magnitude=False)
        back = kspace.zero_fill_upsample(low, image.shape, magnitude=False)
        np.testing.assert_allclose(back.real, image, atol=1e-9)
        band = kspace.pad_kspace(kspace.crop_kspace(kspace.fft2c(image), lr), image.shape)
        np.testing.assert_allclose(kspace.ifft2c(band).real, image, atol=1e-9)


def test_crop_and_pad_are_inverse_on_the_band():
    rng = np.random.default_rng(5)
    k = rng.normal(size=(3, 9, 8)) + 1j * rng.normal(size=(3, 9, 8))
    small = kspace.crop_kspace(k, (5, 4))
    assert small.shape == (3, 5, 4)
    np.testing.assert_array_equal(small[:, 2, 2], k[:, 4, 4])
    np.testing.assert_array_equal(kspace.crop_kspace(kspace.pad_kspace(small, (9, 8)), (5, 4)), small)
    with pytest.raises(ValueError):
        kspace.crop_kspace(k, (10, 4))


def test_bicubic_agrees_with_kspace_grid_better_than_half_pixel_shift():
    rng = np.random.default_rng(6)
    image, f = _band_limited((64, 64), [(1, 1), (2, -1), (0, 2)], rng)
    lr = kspace.downsample(image, 4, magnitude=False).real
    t = torch.from_numpy(image)[None, None]
    bicubic = F.interpolate(t, size=(16, 16), mode="bicubic", align_corners=False)[0, 0].numpy()
    shifted = np.roll(image, (2, 2), axis=(0, 1))  # half an LR pixel at scale 4
    bicubic_shifted = F.interpolate(torch.from_numpy(shifted)[None, None], size=(16, 16), mode="bicubic",
                                    align_corners=False)[0, 0].numpy()
    inner = (slice(2, -2), slice(2, -2))
    aligned = np.abs(bicubic - lr)[inner].max()
    assert aligned < 0.05
    assert aligned * 5 < np.abs(bicubic_shifted - lr)[inner].max()
    plain = kspace.ifft2c(kspace.crop_kspace(kspace.fft2c(image), (16, 16))).real / 4
    assert aligned < np.abs(bicubic - plain)[inner].max()


def test_seed_from_name_is_stable():
    assert kspace.seed_from_name("IXI002-Guys-0828-T2.nii.gz") == kspace.seed_from_name("IXI002-Guys-0828-T2.nii.gz")
    assert kspace.seed_from_name("a.nii.gz") != kspace.seed_from_name("b.nii.gz")
    expected = int.from_bytes(__import__("hashlib").sha256(b"a.nii.gz").digest()[:4], "little")
    assert kspace.seed_from_name("a.nii.gz") == expected
    assert 0 <= kspace.seed_from_name("x") < 2**32


@pytest.mark.parametrize("width,R,cf", [(256, 4, 0.08), (320, 8, 0.04), (97, 3, 0.1), (368, 6.5, 0.05)])
def test_random_mask_acceleration_on_average(width, R, cf):
    mask = kspace.RandomMask(R, cf)
    counts = [mask(width, seed=s).sum() for s in range(200)]
    assert width / np.mean(counts) == pytest.approx(R, rel=0.03)


@pytest.mark.parametrize("width,R,cf", [(256, 4, 0.08), (320, 8, 0.04), (97, 3, 0.1), (368, 6.5, 0.05)])
def test_equispaced_mask_acceleration_and_spacing(width, R, cf):
    mask = kspace.EquispacedMask(R, cf)
    for s in range(20):
        m = mask(width, seed=s)
        assert width / m.sum() == pytest.approx(R, rel=0.1)
        num_low = round(width * cf)
        pad = (width - num_low + 1) // 2
        spacing = (width - num_low) / (width / R - num_low)
        for side in (np.flatnonzero(m[:pad]), np.flatnonzero(m[pad + num_low:])):
            assert set(np.diff(side)) <= {math.floor(spacing), math.ceil(spacing)}


@pytest.mark.parametrize("kind", ["random", "equispaced"])
def test_mask_centre_fully_sampled_and_seeded(kind):
    cls = kspace.MASKS[kind]
    width, cf = 100, 0.1
    m = cls(4, cf)(width, seed=7)
    assert m.dtype == bool and m.shape == (width,)
    assert m[45:55].all()  # round(100 * 0.1) = 10 centre columns around index 50
    np.testing.assert_array_equal(m, cls(4, cf)(width, seed=7))
    assert any((cls(4, cf)(width, seed=s) != m).any() for s in range(8, 12))
    odd = cls(4, 0.1)(33, seed=1)
    assert odd[15:18].all() and odd[16]


def test_mask_rng_is_owned_by_the_object():
    a, b = kspace.RandomMask(4, 0.08, seed=3), kspace.RandomMask(4, 0.08, seed=3)
    first = a(128)
    np.random.seed(0)
    torch.manual_seed(0)
    np.testing.assert_array_equal(first, b(128))
    second = a(128)
    assert (second != first).any()  # the object's generator advances
    np.testing.assert_array_equal(b(128), second)
    a(128, seed=99)  # a seeded call leaves the object's generator alone
    np.testing.assert_array_equal(a(128), b(128))


def test_mask_rejects_bad_parameters():
    with pytest.raises(ValueError):
        kspace.RandomMask(0.5, 0.08)
    with pytest.raises(ValueError):
        kspace.EquispacedMask(4, 0.0)
    full = kspace.EquispacedMask(1, 0.08)(64, seed=0)
    assert full.all()


def test_degrade_mask_then_crop_equals_crop_of_masked_kspace():
    rng = np.random.default_rng(8)
    image = rng.uniform(size=(2, 40, 36))
    mask = kspace.RandomMask(4, 0.08)(36, seed=1)
    out = kspace.degrade(image, (2.0, 1.5), mask=mask, mask_grid="hr", magnitude=False)
    masked = kspace.ifft2c(kspace.fft2c(image) * mask)
    want = kspace.downsample(masked, (2.0, 1.5), magnitude=False)
    np.testing.assert_allclose(out, want, atol=1e-10)
    assert out.shape == (2, 20, 24)
    np.testing.assert_allclose(kspace.degrade(image, (2.0, 1.5)), kspace.downsample(image, (2.0, 1.5)), atol=1e-10)
    with pytest.raises(ValueError):
        kspace.degrade(image, 2, mask=mask[:-1], mask_grid="hr")


@pytest.mark.parametrize("snr_db", [10.0, 25.0])
def test_noise_at_snr_gives_the_snr(snr_db):
    rng = np.random.default_rng(9)
    image = torch.from_numpy(rng.uniform(0.2, 1.0, size=(4, 128, 128)))
    clean = kspace.degrade(image, 2, magnitude=False)
    gen = torch.Generator().manual_seed(0)
    noisy = kspace.degrade(image, 2, noise_snr_db=snr_db, generator=gen, magnitude=False)
    noise = noisy - clean
    rms = clean.abs().pow(2).mean().sqrt()
    for part in (noise.real, noise.imag):
        measured = 20 * math.log10(float(rms / part.std()))
        assert measured == pytest.approx(snr_db, abs=0.15)
    again = kspace.degrade(image, 2, noise_snr_db=snr_db, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, noisy.abs())
