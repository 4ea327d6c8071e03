"""2-D CT acquisition geometries: parallel beam and equiangular (third-generation, curved-detector) fan beam.

Coordinates (mm): the image is ``[H, W]`` with square pixels of ``pixel_size``; ``x`` runs along the columns
(left to right), ``y`` up the rows (row 0 at the top), the origin at the image centre, so pixel ``(i, j)`` sits at
``x = (j - (W - 1) / 2) * pixel_size``, ``y = ((H - 1) / 2 - i) * pixel_size``.

* Parallel beam: view angle ``theta`` measures the detector coordinate ``s = x cos(theta) + y sin(theta)`` (the
  convention of scikit-image's ``radon``); bin ``k`` sits at ``s_k = (k - (n_det - 1) / 2 + offset) * det_spacing``.
  Default views: ``n_views`` angles uniformly over [0, pi).
* Fan beam: the source at angle ``beta`` sits at ``source_distance * (-sin(beta), cos(beta))``; detector element
  ``k`` has fan angle ``gamma_k = (k - (n_det - 1) / 2 + offset) * det_spacing / detector_distance``
  (``det_spacing`` is measured along the arc at ``detector_distance`` from the source). Ray ``(beta, gamma)`` is
  the parallel ray ``theta = beta + gamma``, ``s = source_distance * sin(gamma)`` (Kak & Slaney, *Principles of
  Computerized Tomographic Imaging*, IEEE Press 1988, ch. 3.4). Views: uniformly over [0, 2 pi).

The default fan geometry copies the Siemens SOMATOM Definition AS+ of the AAPM/Mayo low-dose CT data
(source-isocentre 595 mm, source-detector 1085.6 mm); its detector sampling at the isocentre equals the pixel
size and its detector covers the image diagonal.

The scanner geometry (:func:`scanner_geometry`, used by the dose simulation) has a physical sampling that does
not depend on the image: ``REFERENCE_PITCH`` mm between detector samples at the isocentre and
``REFERENCE_VIEWS`` views (fan beam over 2 pi; parallel beam over pi, which measures every line once instead of
twice, so both take the same number of readings and photons); only the detector's length follows the image's
field of view. So a scan's resolution and noise are the same at every pixel size. (The numbers are of the order of
a clinical scanner's in-plane sampling; they are a stated convention, not a model of one product.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

KINDS = ("parallel", "fan")
SOURCE_DISTANCE = 595.0
DETECTOR_DISTANCE = 1085.6
REFERENCE_PITCH = 0.7  # mm between detector samples at the isocentre
REFERENCE_VIEWS = 1152


@dataclass(frozen=True)
class Geometry:
    """One 2-D acquisition and the image grid it reconstructs onto (lengths in mm, angles in radians)."""

    kind: str
    shape: tuple[int, int]
    pixel_size: float
    n_views: int
    n_det: int
    det_spacing: float
    source_distance: float = SOURCE_DISTANCE
    detector_distance: float = DETECTOR_DISTANCE
    det_offset: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"geometry kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "fan" and self.radius >= self.source_distance:
            raise ValueError(f"the image (radius {self.radius:.1f} mm) must lie inside the source circle "
                             f"({self.source_distance:g} mm)")

    @property
    def radius(self) -> float:
        """Radius (mm) of the circle around the image grid; rays are sampled across it."""
        h, w = self.shape
        return 0.5 * math.hypot(h, w) * self.pixel_size

    @property
    def scan_range(self) -> float:
        return math.pi if self.kind == "parallel" else 2 * math.pi

    @property
    def pitch_at_isocentre(self) -> float:
        """Detector sampling (mm) at the isocentre."""
        return self.det_spacing if self.kind == "parallel" else self.det_step * self.source_distance

    @property
    def det_step(self) -> float:
        """Detector sampling: mm (parallel) or radians of fan angle (fan)."""
        return self.det_spacing if self.kind == "parallel" else self.det_spacing / self.detector_distance

    def angles(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """View angles ``[n_views]`` (theta for parallel beam, source angle beta for fan beam)."""
        return torch.arange(self.n_views, device=device, dtype=torch.float64).mul(
            self.scan_range / self.n_views).to(dtype)

    def det_positions(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
                      ) -> torch.Tensor:
        """Detector bin centres ``[n_det]``: ``s`` in mm (parallel) or fan angle ``gamma`` (fan)."""
        k = torch.arange(self.n_det, device=device, dtype=torch.float64)
        return ((k - (self.n_det - 1) / 2 + self.det_offset) * self.det_step).to(dtype)

    def parallel_rays(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(theta, s)`` of every measured ray, each ``[n_views, n_det]`` (fan rays rebinned analytically)."""
        angles = self.angles(device, torch.float64)[:, None]
        det = self.det_positions(device, torch.float64)[None, :]
        if self.kind == "parallel":
            theta, s = angles.expand(-1, self.n_det), det.expand(self.n_views, -1)
        else:
            theta, s = angles + det, (self.source_distance * torch.sin(det)).expand(self.n_views, -1)
        return theta.to(dtype), s.to(dtype)

    def pixel_centres(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of every pixel centre, each ``[H, W]`` (mm)."""
        h, w = self.shape
        x = (torch.arange(w, device=device, dtype=dtype) - (w - 1) / 2) * self.pixel_size
        y = ((h - 1) / 2 - torch.arange(h, device=device, dtype=dtype)) * self.pixel_size
        return x[None, :].expand(h, w), y[:, None].expand(h, w)


def default_geometry(kind: str, shape: tuple[int, int], pixel_size: float, n_views: int | None = None,
                     pitch: float | None = None) -> Geometry:
    """A geometry whose detector covers the image diagonal with isocentre sampling ``pitch`` (default: the pixel
    size).

    Default views: ``n_det`` over [0, pi) for parallel beam (about the angular Nyquist rate / 1.5), ``1.5 n_det``
    over [0, 2 pi) for fan beam.
    """
    if kind not in KINDS:
        raise ValueError(f"geometry kind must be one of {KINDS}, got {kind!r}")
    pitch = pitch or pixel_size
    radius = 0.5 * math.hypot(*shape) * pixel_size
    if kind == "parallel":
        n_det = math.ceil(2 * radius / pitch) + 2
        return Geometry(kind, tuple(shape), pixel_size, n_views or n_det, n_det, pitch)
    if radius >= SOURCE_DISTANCE:
        raise ValueError(f"the image (radius {radius:.1f} mm) must lie inside the source circle ({SOURCE_DISTANCE} mm)")
    fan_step = pitch / SOURCE_DISTANCE
    n_det = math.ceil(2 * math.asin(radius / SOURCE_DISTANCE) / fan_step) + 2
    return Geometry(kind, tuple(shape), pixel_size, n_views or round(1.5 * n_det), n_det,
                    fan_step * DETECTOR_DISTANCE)


def scanner_geometry(kind: str, shape: tuple[int, int], pixel_size: float) -> Geometry:
    """The physical sampling of the module docstring (``REFERENCE_PITCH``, ``REFERENCE_VIEWS``) for an image."""
    return default_geometry(kind, shape, pixel_size, REFERENCE_VIEWS, REFERENCE_PITCH)
