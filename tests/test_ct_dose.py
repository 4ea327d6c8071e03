"""Projection-domain low-dose simulation and its HU-noise calibration on a water cylinder."""

from __future__ import annotations

import pytest
import torch

from medsr.ct.dose import (DEFAULT_ROI_RADIUS, NoiseTerms, calibrate_i0, central_disc, noisy_projections,
                           simulate_low_dose, water_noise_hu)
from medsr.ct.geometry import default_geometry
from medsr.ct.phantom import body_phantom, ellipse_image, water_cylinder
from medsr.ct.units import mu_to_hu

FAN = default_geometry("fan", (64, 64), 5.0)
PARALLEL = default_geometry("parallel", (64, 64), 5.0)


def _hu(ellipses: list, geometry) -> torch.Tensor:
    return mu_to_hu(ellipse_image(ellipses, geometry, supersample=2)).float()


def test_calibrated_simulation_reaches_the_target_hu_noise_on_water() -> None:
    """End to end (rasterised cylinder, our projector, Poisson + electronic noise): within 5% of the target."""
    target, electronic = 20.0, 10.0
    i0 = calibrate_i0(target, FAN, "hann", electronic_noise=electronic)
    water = _hu(water_cylinder(), FAN).expand(48, -1, -1)
    low = simulate_low_dose(water, FAN, 1.0, i0, electronic, "hann", torch.Generator().manual_seed(3))
    roi = central_disc(FAN, DEFAULT_ROI_RADIUS)
    measured = float((low - water)[:, roi].var(dim=1).mean().sqrt())
    assert abs(measured / target - 1) < 0.05


def test_calibration_holds_at_the_given_dose() -> None:
    i0 = calibrate_i0(30.0, PARALLEL, "ram-lak", dose=0.25, electronic_noise=10.0)
    measured = water_noise_hu(PARALLEL, i0, 0.25, 10.0, "ram-lak", seed=1)
    assert abs(measured / 30.0 - 1) < 0.05


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
    low = simulate_low_dose(image, FAN, 1.0, 1e12, 0.0, "hann", torch.Generator().manual_seed(0))
    assert (low - image).abs().max() < 1.0
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
    assert terms.i0_for(10.0) == pytest.approx(3e6 / 100)


@pytest.mark.parametrize("dose, i0, electronic", [(0.0, 1e5, 0.0), (1.5, 1e5, 0.0), (0.5, -1.0, 0.0),
                                                  (0.5, 1e5, -1.0)])
def test_bad_simulation_values_are_rejected(dose: float, i0: float, electronic: float) -> None:
    with pytest.raises(ValueError):
        noisy_projections(torch.zeros(3), dose, i0, electronic)


def test_calibration_target_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        calibrate_i0(0.0, PARALLEL)

