"""Ray-driven forward projection and pixel-driven backprojection in plain torch (CPU or GPU, batched,
differentiable with respect to the image or the sinogram).

Forward projection: each ray is sampled at the midpoints of ``M`` equal steps (about ``step`` pixels long) across
the circle around the image grid; the image is read there with bilinear interpolation
(``grid_sample(..., align_corners=False)``, zero outside the grid, which is the pixel-centre grid of
:mod:`medsr.ct.geometry`) and the samples are summed times the step length, so sinograms are line integrals in
the image's units times mm.

Backprojection (for FBP): every pixel centre is projected onto each view's detector and the sinogram is read
there with linear interpolation (zero outside the detector).

Sinograms are ``[..., n_views, n_det]``; images ``[..., H, W]``. Work is split into chunks of views to bound
memory (``POINTS_PER_CHUNK`` interpolation points at a time).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medsr.ct.geometry import Geometry

POINTS_PER_CHUNK = 1 << 22


def _view_chunks(n_views: int, points_per_view: int) -> list[slice]:
    size = max(1, POINTS_PER_CHUNK // max(points_per_view, 1))
    return [slice(v, min(v + size, n_views)) for v in range(0, n_views, size)]


def _rays(geometry: Geometry, views: slice, device: torch.device, dtype: torch.dtype
          ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Origins and unit directions ``[v, n_det, 2]`` of the rays of ``views``, and the ray parameter of the
    first point of the sampled segment."""
    angles = geometry.angles(device, dtype)[views][:, None]
    det = geometry.det_positions(device, dtype)[None, :]
    if geometry.kind == "parallel":
        cos, sin = torch.cos(angles), torch.sin(angles)
        origin = torch.stack(torch.broadcast_tensors(det * cos, det * sin), -1)
        direction = torch.stack(torch.broadcast_tensors(-sin, cos), -1).expand_as(origin)
        return origin, direction, -geometry.radius
    theta = angles + det
    source = geometry.source_distance * torch.stack((-torch.sin(angles), torch.cos(angles)), -1)
    direction = torch.stack((torch.sin(theta), -torch.cos(theta)), -1)
    return source.expand_as(direction), direction, geometry.source_distance - geometry.radius


def _flat(x: torch.Tensor, trailing: tuple[int, int], name: str) -> tuple[torch.Tensor, tuple[int, ...]]:
    if tuple(x.shape[-2:]) != trailing:
        raise ValueError(f"{name} must end in {trailing}, got shape {tuple(x.shape)}")
    lead = tuple(x.shape[:-2])
    return x.reshape(-1, *trailing), lead


def forward_project(image: torch.Tensor, geometry: Geometry, step: float = 0.5) -> torch.Tensor:
    """Line integrals ``[..., n_views, n_det]`` of ``image [..., H, W]`` (``step``: sample spacing in pixels)."""
    flat, lead = _flat(image, geometry.shape, "image")
    h, w = geometry.shape
    n_samples = max(1, math.ceil(2 * geometry.radius / (step * geometry.pixel_size)))
    dt = 2 * geometry.radius / n_samples
    t = (torch.arange(n_samples, device=image.device, dtype=image.dtype) + 0.5) * dt
    scale = torch.tensor([2 / (w * geometry.pixel_size), -2 / (h * geometry.pixel_size)], device=image.device,
                         dtype=image.dtype)
    source = flat[None]  # [1, B, H, W]: the batch shares every sampling grid
    views = []
    for chunk in _view_chunks(geometry.n_views, geometry.n_det * n_samples):
        origin, direction, t0 = _rays(geometry, chunk, image.device, image.dtype)
        points = origin[..., None, :] + (t0 + t)[:, None] * direction[..., None, :]  # [v, n_det, M, 2]
        grid = (points * scale).reshape(1, -1, n_samples, 2)
        samples = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        views.append(samples.sum(-1).reshape(flat.shape[0], -1, geometry.n_det) * dt)
    return torch.cat(views, 1).reshape(*lead, geometry.n_views, geometry.n_det)


def _detector_coordinates(geometry: Geometry, views: slice, x: torch.Tensor, y: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractional detector index ``[v, P]`` of each pixel in each view, and the fan-beam distance weight
    ``1 / L^2`` (source to pixel; ones for parallel beam)."""
    angles = geometry.angles(x.device, x.dtype)[views][:, None]
    cos, sin = torch.cos(angles), torch.sin(angles)
    if geometry.kind == "parallel":
        coordinate = x * cos + y * sin
        weight = torch.ones_like(coordinate)
    else:
        vx = x + geometry.source_distance * sin
        vy = y - geometry.source_distance * cos
        # angle from the central ray (sin, -cos) to the source-pixel vector, counter-clockwise positive
        coordinate = torch.atan2(sin * vy + cos * vx, sin * vx - cos * vy)
        weight = 1 / (vx * vx + vy * vy)
    index = coordinate / geometry.det_step + (geometry.n_det - 1) / 2 - geometry.det_offset
    return index, weight


def backproject(sinogram: torch.Tensor, geometry: Geometry, distance_weight: bool = False) -> torch.Tensor:
    """Sum over views of the sinogram read at each pixel's detector position, ``[..., H, W]``.

    ``distance_weight`` multiplies each view's contribution by ``1 / L^2``, L the source-pixel distance (the
    weight of fan-beam FBP, Kak & Slaney eq. 3.4.2); not a scale factor: multiply by the view spacing for FBP.
    """
    flat, lead = _flat(sinogram, (geometry.n_views, geometry.n_det), "sinogram")
    x, y = (c.reshape(1, -1) for c in geometry.pixel_centres(sinogram.device, sinogram.dtype))
    image = torch.zeros(flat.shape[0], x.shape[1], device=sinogram.device, dtype=sinogram.dtype)
    for chunk in _view_chunks(geometry.n_views, x.shape[1]):
        index, weight = _detector_coordinates(geometry, chunk, x, y)
        lower = torch.floor(index)
        frac = index - lower
        lower = lower.long()
        rows = flat[:, chunk]  # [B, v, n_det]
        total = torch.zeros_like(image)
        for offset, w in ((0, 1 - frac), (1, frac)):
            k = lower + offset
            inside = (k >= 0) & (k < geometry.n_det)
            values = torch.gather(rows, 2, k.clamp(0, geometry.n_det - 1)[None].expand(flat.shape[0], -1, -1))
            contribution = values * (w * inside)
            total = total + (contribution * weight if distance_weight else contribution).sum(1)
        image = image + total
    return image.reshape(*lead, *geometry.shape)
