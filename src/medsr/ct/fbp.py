"""Filtered backprojection for parallel-beam and equiangular fan-beam sinograms (Kak & Slaney, *Principles of
Computerized Tomographic Imaging*, IEEE Press 1988, ch. 3.3 and 3.4.2).

Filtering: each view is zero-padded to ``P >= 2 n_det`` samples (a power of two, at least 64) and multiplied in
the frequency domain by the DFT of the band-limited ramp sampled in space (K&S eq. 3.61: ``h(0) = 1 / (4 d^2)``,
``h(n) = -1 / (n pi d)^2`` for odd ``n``, 0 for even ``n``), which has no DC offset, times a window ``W(f)`` of
the frequency ``f`` in cycles per sample: Ram-Lak ``1``; Shepp-Logan ``sin(pi f) / (pi f)``; Hann
``(1 + cos(2 pi f)) / 2`` (zero at Nyquist: the smoothest, lowest-noise of the three).

* Parallel beam: ``f(x, y) = (pi / n_views) sum_theta q_theta(x cos(theta) + y sin(theta))`` over views uniform in
  [0, pi), ``q`` the filtered projection.
* Fan beam (equiangular, full 2 pi scan): views are weighted by ``D cos(gamma)``, filtered with
  ``g(gamma) = (gamma / sin(gamma))^2 h(gamma) / 2`` (K&S eq. 3.4.2; the windowed ramp modulated in space), and
  backprojected with the distance weight ``1 / L^2``: ``f = (2 pi / n_views) sum_beta q_beta(gamma') / L^2``.
"""

from __future__ import annotations

import math

import torch

from medsr.ct.geometry import Geometry
from medsr.ct.projector import backproject

FILTERS = ("ram-lak", "shepp-logan", "hann")


def padded_length(n_det: int) -> int:
    return max(64, 1 << math.ceil(math.log2(2 * n_det)))


def _window(name: str, f: torch.Tensor) -> torch.Tensor:
    if name == "ram-lak":
        return torch.ones_like(f)
    if name == "shepp-logan":
        return torch.sinc(f)
    if name == "hann":
        return 0.5 * (1 + torch.cos(2 * math.pi * f))
    raise ValueError(f"filter must be one of {', '.join(FILTERS)}, got {name!r}")


def ramp_kernel(length: int, name: str = "ram-lak", dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The windowed ramp filter's impulse response on a circular grid of ``length`` samples (unit spacing; index
    ``n`` and ``n - length`` coincide)."""
    n = torch.fft.fftfreq(length, 1 / length, dtype=dtype)
    h = torch.zeros(length, dtype=dtype)
    h[0] = 0.25
    odd = n.abs() % 2 == 1
    h[odd] = -1 / (math.pi * n[odd]) ** 2
    response = torch.fft.fft(h).real * _window(name, torch.fft.fftfreq(length, dtype=dtype))
    return torch.fft.ifft(response).real


def frequency_response(geometry: Geometry, name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The DFT ``[P]`` by which a padded view is multiplied (the kernel for unit sample spacing; for fan beam
    modulated by ``(n d / sin(n d))^2 / 2`` with ``d`` the fan-angle step)."""
    length = padded_length(geometry.n_det)
    kernel = ramp_kernel(length, name, dtype)
    if geometry.kind == "fan":
        angle = torch.fft.fftfreq(length, 1 / length, dtype=dtype) * geometry.det_step
        ratio = torch.where(angle == 0, torch.ones_like(angle), angle / torch.sin(angle))
        kernel = 0.5 * ratio**2 * kernel
    return torch.fft.fft(kernel).real


def filter_sinogram(sinogram: torch.Tensor, geometry: Geometry, name: str = "ram-lak") -> torch.Tensor:
    """Filtered views ``[..., n_views, n_det]`` (fan beam: after the ``D cos(gamma)`` weighting)."""
    views = sinogram
    if geometry.kind == "fan":
        gamma = geometry.det_positions(sinogram.device, sinogram.dtype)
        views = views * (geometry.source_distance * torch.cos(gamma))
    length = padded_length(geometry.n_det)
    response = frequency_response(geometry, name).to(device=sinogram.device, dtype=sinogram.dtype)
    spectrum = torch.fft.rfft(views, n=length, dim=-1) * response[: length // 2 + 1]
    # the kernel is for unit spacing: h_d(n) = h(n) / d^2 and the convolution sum carries a factor d
    return torch.fft.irfft(spectrum, n=length, dim=-1)[..., : geometry.n_det] / geometry.det_step


def fbp(sinogram: torch.Tensor, geometry: Geometry, filter_name: str = "ram-lak") -> torch.Tensor:
    """Filtered backprojection ``[..., H, W]`` of line integrals ``[..., n_views, n_det]`` (the image in the
    units of the projected quantity, e.g. 1/mm for attenuation line integrals)."""
    filtered = filter_sinogram(sinogram, geometry, filter_name)
    image = backproject(filtered, geometry, distance_weight=geometry.kind == "fan")
    return image * (math.pi / geometry.n_views if geometry.kind == "parallel" else 2 * math.pi / geometry.n_views)
