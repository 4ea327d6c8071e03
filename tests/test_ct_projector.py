"""The CT projector and FBP against scikit-image (parallel beam) and exact line integrals (fan beam)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, gaussian_filter
from skimage.transform import iradon, radon

from medsr.ct.fbp import FILTERS, fbp, filter_sinogram
from medsr.ct.geometry import Geometry, default_geometry
from medsr.ct.phantom import body_phantom, ellipse_image, ellipse_points, ellipse_sinogram
from medsr.ct.projector import backproject, forward_project
from medsr.ct.units import MU_WATER, hu_to_mu, mu_to_hu

N = 65  # odd: scikit-image rotates about pixel N // 2, which is the grid centre only for odd N
SKIMAGE_FILTERS = {"ram-lak": "ramp", "shepp-logan": "shepp-logan", "hann": "hann"}


def _smooth_image(n: int, pixel_size: float) -> torch.Tensor:
    geometry = Geometry("parallel", (n, n), pixel_size, 1, n, pixel_size)
    phantom = ellipse_image(body_phantom(n * pixel_size / 400), geometry)
    x, y = geometry.pixel_centres(dtype=torch.float64)
    circle = (x**2 + y**2 < (0.45 * n * pixel_size) ** 2).numpy()
    return torch.from_numpy(gaussian_filter(phantom.numpy(), 1.0) * circle)


def _parallel(pixel_size: float = 1.0, n_views: int = 90) -> Geometry:
    return Geometry("parallel", (N, N), pixel_size, n_views, N, pixel_size)


@pytest.mark.parametrize("pixel_size", [1.0, 2.5])
def test_parallel_projection_matches_skimage_radon(pixel_size: float) -> None:
    """radon sums in pixel units: our line integrals in mm are pixel_size times larger; 0.5% of the peak."""
    geometry = _parallel(pixel_size)
    image = _smooth_image(N, pixel_size)
    ours = forward_project(image, geometry).numpy()
    theirs = radon(image.numpy(), np.degrees(geometry.angles(dtype=torch.float64).numpy()), circle=True).T
    assert np.abs(ours - pixel_size * theirs).max() < 5e-3 * np.abs(pixel_size * theirs).max()


@pytest.mark.parametrize("name", FILTERS)
def test_parallel_fbp_matches_skimage_iradon(name: str) -> None:
    """Same sinogram, same filter: within 1% of the peak inside the reconstruction circle."""
    geometry = _parallel()
    sinogram = forward_project(_smooth_image(N, 1.0), geometry)
    ours = fbp(sinogram, geometry, name).numpy()
    theirs = iradon(sinogram.numpy().T, np.degrees(geometry.angles(dtype=torch.float64).numpy()),
                    filter_name=SKIMAGE_FILTERS[name], circle=True)
    rows, cols = np.mgrid[:N, :N] - N // 2
    inside = rows**2 + cols**2 < (0.45 * N) ** 2
    assert np.abs(ours - theirs)[inside].max() < 1e-2 * np.abs(theirs).max()


def _gaussian_line_integrals(geometry: Geometry, sigma: float, x0: float, y0: float) -> torch.Tensor:
    """Exact line integrals of exp(-|p - p0|^2 / (2 sigma^2)): sqrt(2 pi) sigma exp(-(s - s0)^2 / (2 sigma^2))."""
    theta, s = geometry.parallel_rays(dtype=torch.float64)
    s0 = x0 * torch.cos(theta) + y0 * torch.sin(theta)
    return math.sqrt(2 * math.pi) * sigma * torch.exp(-((s - s0) ** 2) / (2 * sigma**2))


@pytest.mark.parametrize("kind", ["fan", "parallel"])
def test_projection_of_a_gaussian_matches_its_exact_line_integrals(kind: str) -> None:
    """Within 1% of the peak for sigma = 5 pixels (bilinear interpolation errs by about (pixel / sigma)^2 / 8)."""
    geometry = default_geometry(kind, (48, 48), 4.0, n_views=60)
    x, y = geometry.pixel_centres(dtype=torch.float64)
    sigma, x0, y0 = 20.0, 20.0, -15.0
    image = torch.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
    exact = _gaussian_line_integrals(geometry, sigma, x0, y0)
    assert (forward_project(image, geometry) - exact).abs().max() < 1e-2 * exact.max()


def test_fan_projection_of_a_rasterised_phantom_matches_its_exact_line_integrals() -> None:
    """Pixelisation of sharp edges limits the agreement: rms error below 1% of the peak."""
    geometry = default_geometry("fan", (64, 64), 5.0)
    exact = ellipse_sinogram(body_phantom(), geometry)
    ours = forward_project(ellipse_image(body_phantom(), geometry, supersample=8), geometry)
    assert (ours - exact).pow(2).mean().sqrt() < 1e-2 * exact.max()


def _interior(geometry: Geometry, image: torch.Tensor) -> np.ndarray:
    """Pixels inside the body ellipse and at least three pixels from any edge of the phantom."""
    gy, gx = np.gradient(image.numpy())
    edges = binary_dilation(np.hypot(gx, gy) > 0, iterations=3)
    x, y = geometry.pixel_centres(dtype=torch.float64)
    return (ellipse_points(body_phantom()[:1], x, y) > 0).numpy() & ~edges


@pytest.mark.parametrize("kind", ["fan", "parallel"])
@pytest.mark.parametrize("name, bound_hu", [("ram-lak", 20.0), ("hann", 5.0)])
def test_fbp_of_exact_projections_reconstructs_the_phantom(kind: str, name: str, bound_hu: float) -> None:
    """RMSE inside the object (away from edges) in HU of the error; the mean error below 1 HU."""
    geometry = default_geometry(kind, (64, 64), 5.0)
    truth = ellipse_image(body_phantom(), geometry, supersample=8)
    error = (fbp(ellipse_sinogram(body_phantom(), geometry), geometry, name) - truth).numpy()
    inside = error[_interior(geometry, truth)] / MU_WATER * 1000
    assert np.sqrt(np.mean(inside**2)) < bound_hu
    assert abs(inside.mean()) < 1.0


@pytest.mark.parametrize("kind", ["fan", "parallel"])
def test_batches_give_the_per_item_results(kind: str) -> None:
    geometry = default_geometry(kind, (16, 16), 10.0, n_views=12)
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    sinograms = forward_project(images, geometry)
    assert sinograms.shape == (2, 3, 12, geometry.n_det)
    torch.testing.assert_close(sinograms[1, 2], forward_project(images[1, 2], geometry))
    torch.testing.assert_close(fbp(sinograms, geometry)[0, 1], fbp(sinograms[0, 1], geometry))


@pytest.mark.parametrize("kind", ["fan", "parallel"])
def test_projector_and_fbp_are_differentiable(kind: str) -> None:
    geometry = default_geometry(kind, (6, 6), 10.0, n_views=4)
    image = torch.rand(6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: forward_project(t, geometry, step=1.0), (image,))
    sinogram = torch.rand(4, geometry.n_det, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fbp(t, geometry, "hann"), (sinogram,))


def _pixel_driven_backprojection(sinogram: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Reference: every pixel centre read on every view's detector by linear interpolation (zero outside)."""
    x, y = (c.numpy() for c in geometry.pixel_centres(dtype=torch.float64))
    s = geometry.det_positions(dtype=torch.float64).numpy()
    image = np.zeros(geometry.shape)
    for theta, view in zip(geometry.angles(dtype=torch.float64).numpy(), sinogram):
        image += np.interp(x * np.cos(theta) + y * np.sin(theta), s, view, left=0.0, right=0.0)
    return image


def test_fourier_backprojection_equals_pixel_driven_interpolation() -> None:
    """The parallel-beam backprojection (NUFFT, frequencies up to twice the detector Nyquist) against the
    plain pixel-driven loop: on a smooth sinogram within 0.5% of the peak; on the Hann FBP of white noise (what the
    dose simulation reconstructs) the noise std within 1% and each pixel within 8% rms (the missing frequencies
    above twice Nyquist)."""
    geometry = default_geometry("parallel", (64, 64), 2.0, n_views=60)
    smooth = forward_project(_smooth_image(64, 2.0).float(), geometry).double()
    reference = _pixel_driven_backprojection(smooth.numpy(), geometry)
    assert np.abs(backproject(smooth, geometry).numpy() - reference).max() < 5e-3 * np.abs(reference).max()
    noise = torch.randn(60, geometry.n_det, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    filtered = filter_sinogram(noise, geometry, "hann")
    ours, theirs = backproject(filtered, geometry).numpy(), _pixel_driven_backprojection(filtered.numpy(), geometry)
    assert abs(ours.std() / theirs.std() - 1) < 0.01
    assert np.sqrt(np.mean((ours - theirs) ** 2)) < 0.08 * theirs.std()


def test_backprojection_is_nearly_the_adjoint_of_projection() -> None:
    """<A x, y> = <x, A^T y> up to the different interpolations (ray-driven vs pixel-driven): within 3%."""
    geometry = default_geometry("parallel", (32, 32), 1.0, n_views=30)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(32, 32, dtype=torch.float64, generator=generator)
    y = torch.rand(30, geometry.n_det, dtype=torch.float64, generator=generator)
    lhs = (forward_project(x, geometry) * y).sum()
    rhs = (x * backproject(y, geometry)).sum() * geometry.pixel_size
    assert abs(lhs - rhs) < 0.03 * abs(lhs)


def test_hu_conversion_round_trips() -> None:
    hu = torch.tensor([-1000.0, 0.0, 1000.0])
    torch.testing.assert_close(hu_to_mu(hu), torch.tensor([0.0, MU_WATER, 2 * MU_WATER]))
    torch.testing.assert_close(mu_to_hu(hu_to_mu(hu)), hu)


def test_geometry_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="kind"):
        default_geometry("cone", (8, 8), 1.0)
    with pytest.raises(ValueError, match="source circle"):
        default_geometry("fan", (512, 512), 3.0)
    with pytest.raises(ValueError, match="filter"):
        fbp(torch.zeros(4, 10), Geometry("parallel", (8, 8), 1.0, 4, 10, 1.0), "hamming")
