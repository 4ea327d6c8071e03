"""Projection-domain low-dose simulation, its HU-noise calibration on a water cylinder, the physical I0, and the
dose law on a real CT slice against an independent (scikit-image) simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.transform import iradon, radon

from medsr.ct.dose import (DEFAULT_ROI_RADIUS, NoiseTerms, attenuation, calibrate_i0, central_disc, inserted_noise,
                           noise_terms, noisy_projections, photons_per_reading, simulate_low_dose, water_noise_hu)
from medsr.ct.geometry import Geometry, default_geometry, scanner_geometry
from medsr.ct.phantom import body_phantom, ellipse_image, water_cylinder
from medsr.ct.projector import forward_project
from medsr.ct.units import MU_WATER, mu_to_hu
from medsr.ct.water_region import water_region
from medsr.data.embedded_ct import SOURCES, read_ct_slice, resize, source_path

FAN = default_geometry("fan", (64, 64), 5.0)
PARALLEL = default_geometry("parallel", (64, 64), 5.0)


def _hu(ellipses: list, geometry) -> torch.Tensor:
    return mu_to_hu(ellipse_image(ellipses, geometry, supersample=2)).float()


def test_calibrated_simulation_reaches_the_target_hu_noise_on_water() -> None:
    """End to end (rasterised cylinder, our projector, Poisson + electronic noise): within 5% of the target."""
    target, electronic = 20.0, 10.0
    i0 = calibrate_i0(target, FAN, "hann", electronic_noise=electronic)
    water = _hu(water_cylinder(), FAN).expand(48, -1, -1)
    low = simulate_low_dose(water, FAN, 1.0, i0, electronic, "hann", torch.Generator().manual_seed(3),
                            noise_free_input=True)
    roi = central_disc(FAN, DEFAULT_ROI_RADIUS)
    measured = float((low - water)[:, roi].var(dim=1).mean().sqrt())
    assert abs(measured / target - 1) < 0.05


def test_calibration_holds_at_the_given_dose() -> None:
    i0 = calibrate_i0(30.0, PARALLEL, "ram-lak", dose=0.25, electronic_noise=10.0)
    measured = water_noise_hu(PARALLEL, i0, 0.25, 10.0, "ram-lak", seed=1)
    assert abs(measured / 30.0 - 1) < 0.05


def test_calibration_is_checked_at_the_target_dose() -> None:
    """I0 calibrated for 20 HU at full dose: the Poisson simulation at a quarter dose matches the noise model
    (second order in 1 / lambda) within 5%; the first-order model alone is further off."""
    terms = noise_terms(PARALLEL, "hann")
    i0 = terms.i0_for(20.0, 1.0, 10.0)
    measured = water_noise_hu(PARALLEL, i0, 0.25, 10.0, "hann", seed=1)
    assert abs(measured / terms.noise_hu(i0, 0.25, 10.0) - 1) < 0.05
    assert abs(measured / 20.0 / 2 - 1) > 0.05  # the electronic noise grows faster than 1 / dose


def test_noise_std_scales_as_one_over_sqrt_dose() -> None:
    full = water_noise_hu(PARALLEL, 1e5, 1.0, 0.0, "hann", seed=2)
    quarter = water_noise_hu(PARALLEL, 1e5, 0.25, 0.0, "hann", seed=2)
    assert abs(quarter / full / 2 - 1) < 0.05


def test_sharper_filters_give_more_noise_at_one_i0() -> None:
    noise = [water_noise_hu(PARALLEL, 1e5, 1.0, 10.0, name, realisations=64) for name in
             ("hann", "shepp-logan", "ram-lak")]
    assert noise[0] < noise[1] < noise[2]


def test_full_dose_without_electronic_noise_and_huge_i0_is_nearly_identity() -> None:
    """Also: padding below -1024 HU outside the field of view comes back unchanged."""
    image = _hu(body_phantom(), FAN)
    x, y = FAN.pixel_centres()
    image = torch.where(x**2 + y**2 > 155.0**2, torch.tensor(-3024.0), image)
    low = simulate_low_dose(image, FAN, 1.0, 1e12, 0.0, "hann", torch.Generator().manual_seed(0),
                            noise_free_input=True)
    assert (low - image).abs().max() < 1.0
    assert torch.equal(simulate_low_dose(image, FAN, 1.0, 1e3, 10.0), image)  # a full dose inserts nothing
    assert torch.equal(low[image == -3024], image[image == -3024])


def test_simulation_is_deterministic_per_seed() -> None:
    image = _hu(body_phantom(), PARALLEL)
    runs = [simulate_low_dose(image, PARALLEL, 0.25, 1e4, 10.0, generator=torch.Generator().manual_seed(s))
            for s in (7, 7, 8)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_noisy_projections_follow_the_counting_model() -> None:
    """Mean and variance of the transmitted counts: d I0 exp(-p) and that plus sigma_e^2."""
    p = torch.full((200_000,), 2.0, dtype=torch.float64)
    p_ld = noisy_projections(p, 0.5, 1e3, 4.0, torch.Generator().manual_seed(0))
    counts = 0.5 * 1e3 * torch.exp(-p_ld)
    expected = 500 * torch.exp(torch.tensor(-2.0, dtype=torch.float64))
    assert abs(counts.mean() / expected - 1) < 0.01
    assert abs(counts.var() / (expected + 4.0) - 1) < 0.03


def test_noise_terms_solve_for_i0() -> None:
    terms = NoiseTerms(photon=3e6, electronic=2e12)
    i0 = terms.i0_for(25.0, dose=0.5, electronic_noise=10.0)
    assert terms.noise_hu(i0, dose=0.5, electronic_noise=10.0) == pytest.approx(25.0)
    assert terms.noise_hu(terms.i0_for(10.0)) == pytest.approx(10.0)
    assert NoiseTerms(photon=3e6, electronic=0.0).i0_for(10.0) == pytest.approx(3e6 / 100)


@pytest.mark.parametrize("dose, i0, electronic", [(0.0, 1e5, 0.0), (1.5, 1e5, 0.0), (0.5, -1.0, 0.0),
                                                  (0.5, 1e5, -1.0)])
def test_bad_simulation_values_are_rejected(dose: float, i0: float, electronic: float) -> None:
    with pytest.raises(ValueError):
        noisy_projections(torch.zeros(3), dose, i0, electronic)


def test_calibration_target_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        calibrate_i0(0.0, PARALLEL)



def test_inserted_noise_has_the_missing_variance() -> None:
    """Per ray: (1/d - 1) / lambda + (1/d^2 - 1) sigma_e^2 / lambda^2 (Yu/Zeng), within 3%."""
    p = torch.full((200_000,), 2.0, dtype=torch.float64)
    dose, photons, electronic = 0.25, 1e4, 25.0
    noise = inserted_noise(p, dose, photons, electronic, torch.Generator().manual_seed(0))
    lam = photons * math.exp(-2.0)
    expected = (1 / dose - 1) / lam + (1 / dose**2 - 1) * electronic / lam**2
    assert abs(float(noise.var()) / expected - 1) < 0.03


def test_attenuation_is_never_negative() -> None:
    hu = torch.tensor([-3024.0, -1024.0, -1000.0, 0.0, 1000.0])
    torch.testing.assert_close(attenuation(hu), torch.tensor([0.0, 0.0, 0.0, MU_WATER, 2 * MU_WATER]))
    air = torch.full((32, 32), -1024.0)
    assert forward_project(attenuation(air), default_geometry("parallel", (32, 32), 2.0)).abs().max() == 0


def test_one_i0_is_one_dose_at_every_pixel_size() -> None:
    """The 30 cm water cylinder's noise at I0 = 1e5 in a 320 mm field of view at 4 and 2.5 mm pixels: within 5%
    (Poisson simulation); with the detector sampling tied to the pixel size (the old rule) they differ by 2x."""
    scanner = [water_noise_hu(scanner_geometry("parallel", (n, n), 320 / n), 1e5, 1.0, 10.0, realisations=6)
               for n in (80, 128)]
    assert abs(scanner[0] / scanner[1] - 1) < 0.05
    tied = [noise_terms(default_geometry("parallel", (n, n), 320 / n)).noise_hu(1e5, 1.0, 10.0) for n in (80, 128)]
    assert tied[1] / tied[0] > 1.5


@pytest.fixture(scope="module")
def real_slice() -> tuple[torch.Tensor, float]:
    """The embedded real abdomen CT slice (pydicom-data), area-resampled to 128 x 128 (3.4 mm pixels)."""
    sid, package, distribution, relative, _, sha = next(s for s in SOURCES if s[0] == "abdomen")
    hu, pixel = resize(*read_ct_slice(source_path(package, distribution, relative, sha)), 128)
    return torch.from_numpy(hu), pixel


def test_added_noise_follows_the_dose_law_on_a_real_slice(real_slice) -> None:
    """Added-noise std at 25 % over 50 % of a real full-dose scan: sqrt((1/0.25 - 1) / (1/0.5 - 1)) = sqrt(3)
    within 5% (photon noise; the electronic term, growing as 1/d^2 - 1, would raise it towards sqrt(5));
    4 realisations each, in the automatic water region. Simulating the whole scan at d I0 on top of the image's
    own noise (the noise-free model) gives about sqrt(2) instead."""
    hu, pixel = real_slice
    geometry = scanner_geometry("parallel", tuple(hu.shape), pixel)
    region = water_region(hu[None], pixel)[0]
    stack = hu.expand(4, -1, -1)
    assert region.sum() > 100
    for noise_free_input, holds in ((False, True), (True, False)):
        added = {}
        for dose, seed in ((0.25, 1), (0.5, 2)):
            low = simulate_low_dose(stack, geometry, dose, 1e5, 0.0, "hann", torch.Generator().manual_seed(seed),
                                    noise_free_input=noise_free_input)
            added[dose] = float((low - stack)[:, region].std())
        assert (abs(added[0.25] / added[0.5] / math.sqrt(3) - 1) < 0.05) == holds


def test_agrees_with_an_independent_scikit_image_simulation(real_slice) -> None:
    """The same insertion formula written with scikit-image radon/iradon (parallel beam, 127 x 127, 180 views,
    Hann) gives the same added-noise std in the body within 5% (4 realisations each)."""
    hu, pixel = real_slice
    hu = hu[:127, :127].clone()
    n, views, dose, i0, electronic = 127, 180, 0.25, 1e5, 10.0
    rows, cols = np.mgrid[:n, :n] - n // 2
    outside = torch.from_numpy(rows**2 + cols**2 > (n // 2 - 1) ** 2)
    hu[outside] = -1000.0  # air outside the reconstruction circle, which radon(circle=True) needs
    body = (hu > -500) & ~outside
    geometry = Geometry("parallel", (n, n), pixel, views, n, pixel)
    low = simulate_low_dose(hu.expand(4, -1, -1), geometry, dose, i0, electronic, "hann",
                            torch.Generator().manual_seed(5))
    ours = float((low - hu)[:, body].std())
    theta = np.degrees(geometry.angles(dtype=torch.float64).numpy())
    p = radon(attenuation(hu).double().numpy(), theta, circle=True) * pixel  # line integrals, [n_det, views]
    lam = photons_per_reading(i0, geometry) * np.exp(-p)
    rng = np.random.default_rng(0)
    theirs = []
    for _ in range(4):
        y = dose * lam + np.sqrt((1 - dose) * dose * lam + (1 - dose**2) * electronic) * rng.standard_normal(p.shape)
        noise = -np.log(np.maximum(y, 1.0) / (dose * lam))
        theirs.append(iradon(noise, theta, filter_name="hann", circle=True) / pixel * 1000 / MU_WATER)
    theirs_std = float(np.std(np.stack(theirs)[:, body.numpy()]))
    assert abs(ours / theirs_std - 1) < 0.05
