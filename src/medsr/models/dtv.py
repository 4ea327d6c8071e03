"""Directional total variation with the reference's edges, constrained to the measured k-space band: the
structure-guided variational anchor of multi-contrast super-resolution.

Ehrhardt & Betcke, "Multicontrast MRI reconstruction with structure-guided total variation", SIAM J. Imaging
Sci. 9(3), 2016: the reference ``v`` gives at every pixel the unit-ish direction of its edges,
``xi = grad v / sqrt(|grad v|^2 + eta^2)``, and the regulariser penalises only the part of the target's gradient
that is not parallel to them, ``dTV(x) = sum |D grad x|`` with ``D = I - gamma xi xi^T`` (``0 <= gamma < 1``).
Where the reference is flat (``|grad v| << eta``) it is plain TV. Here the data term is a hard constraint: the
output keeps the input's k-space band exactly (``band(x) = band(zero-filled input)``, the LR measurement), and
among those images the one of least dTV is found, so no weight balances data and prior; ``eta`` is relative to
the largest gradient magnitude of the reference.

Solver: the primal-dual algorithm of Chambolle & Pock (J. Math. Imaging Vis. 40, 2011) for
``min_x ||K x||_{2,1} + i_C(x)``, ``K = D grad`` (``||K||^2 <= 8``), ``C`` the band-consistent images (its
projection replaces the band), dual step a projection onto unit discs, ``sigma = tau = 0.99 / sqrt(8)``; it starts
from zero-filling.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from medsr.kspace import band_projection, zero_fill_upsample
from medsr.models.base import SRModel
from medsr.models.guidance import reference_on_grid
from medsr.registry import MODELS


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences of ``x [B, 1, H, W]`` with Neumann boundaries: ``[B, 2, H, W]`` (rows, columns)."""
    gy = torch.zeros_like(x)
    gx = torch.zeros_like(x)
    gy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    gx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.cat([gy, gx], dim=1)


def divergence(g: torch.Tensor) -> torch.Tensor:
    """The negative adjoint of :func:`gradient`: ``[B, 2, H, W] -> [B, 1, H, W]``."""
    gy, gx = g[:, :1], g[:, 1:]
    dy = torch.zeros_like(gy)
    dx = torch.zeros_like(gx)
    dy[..., 0, :] = gy[..., 0, :]
    dy[..., 1:-1, :] = gy[..., 1:-1, :] - gy[..., :-2, :]
    dy[..., -1, :] = -gy[..., -2, :]
    dx[..., :, 0] = gx[..., :, 0]
    dx[..., :, 1:-1] = gx[..., :, 1:-1] - gx[..., :, :-2]
    dx[..., :, -1] = -gx[..., :, -2]
    return dy + dx


def edge_directions(ref: torch.Tensor, eta: float) -> torch.Tensor:
    """``xi = grad v / sqrt(|grad v|^2 + (eta max |grad v|)^2)`` of the reference ``v [B, 1, H, W]``."""
    g = gradient(ref)
    norm2 = (g * g).sum(dim=1, keepdim=True)
    scale = eta * norm2.amax(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-12)
    return g / torch.sqrt(norm2 + scale * scale)


def directional(g: torch.Tensor, xi: torch.Tensor, gamma: float) -> torch.Tensor:
    """``D g = g - gamma xi (xi . g)`` per pixel (``D`` is symmetric, so it is its own adjoint)."""
    return g - gamma * xi * (xi * g).sum(dim=1, keepdim=True)


@MODELS.register("dtv")
class DirectionalTV(SRModel):
    """Training-free dTV super-resolution with the measured band kept (module docstring): ``eta`` relative edge
    threshold, ``gamma`` in [0, 1), ``iterations`` primal-dual steps. Needs a reference."""

    uses_ref = True

    def __init__(self, eta: float = 0.05, gamma: float = 0.995, iterations: int = 100):
        super().__init__()
        if not eta > 0 or not 0 <= gamma < 1 or int(iterations) != iterations or iterations < 1:
            raise ValueError(f"dtv needs eta > 0, 0 <= gamma < 1 and iterations >= 1, got {eta}, {gamma}, "
                             f"{iterations}")
        self.eta, self.gamma, self.iterations = float(eta), float(gamma), int(iterations)

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> torch.Tensor:
        self.check_scale(lr, out_size)
        self.check_ref(lr, ref)
        if ref is None:
            raise ValueError("dtv needs a reference (--ref)")
        centre = self.centre_slice(lr).float()
        size = (int(out_size[0]), int(out_size[1]))
        base = zero_fill_upsample(centre, size, magnitude=False).real
        xi = edge_directions(reference_on_grid(ref, size), self.eta)

        def project(z: torch.Tensor) -> torch.Tensor:  # onto the images whose band is the measured one
            return base + z - band_projection(z, centre.shape[-2:])

        step = 0.99 / math.sqrt(8.0)
        x, x_bar = base, base
        dual = torch.zeros_like(gradient(base))
        for _ in range(self.iterations):
            dual = dual + step * directional(gradient(x_bar), xi, self.gamma)
            dual = dual / dual.norm(dim=1, keepdim=True).clamp_min(1.0)
            x_new = project(x + step * divergence(directional(dual, xi, self.gamma)))
            x_bar = 2 * x_new - x
            x = x_new
        return x.clamp_min(0).to(lr.dtype)
