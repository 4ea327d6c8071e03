"""Domain-randomised CT anatomy: procedural axial body and head slices in HU, for training CT denoisers on more
anatomy, fields of view and pixel sizes than a few real patients hold.

The CT counterpart of :mod:`medsr.data.synth` (SynthSeg's idea, Billot et al., Medical Image Analysis 86, 2023:
random label layouts, every region's value drawn from a range, so a network cannot learn one template). Here the
layouts are anatomical rather than arbitrary, because CT numbers are physical: each tissue's HU is drawn from
its published range (air -1000, lung -900..-700, fat -120..-70, water/CSF 0..15, soft tissue and muscle
20..70, contrast-enhanced organs and vessels up to 350, trabecular bone 150..400, cortical bone 500..1900).

* **Body** (abdomen / lower chest): an outline with random harmonics, skin, a subcutaneous fat layer and a muscle
  wall of random thickness, viscera as the argmax of smooth random fields (organs, bowel with gas pockets, fluid,
  sometimes lung bases) in visceral fat, a vertebra (cortical rim, trabecular core, spinous process) with
  paraspinal muscles, aorta and cava, ribs, small vessels, lesions, and the scanner table.
* **Head**: an outline with random harmonics, scalp, a skull of random thickness with diploe, cortex with
  CSF-filled sulci, white matter, deep grey islands, ventricles, falx, calcifications, lesions (haemorrhage or
  infarct), sometimes air cells and skull base, and a head rest.

Every region gets a smooth texture of a few HU (8 to 40 control points across the field of view); the image is
blurred by a Gaussian of 0.5 to 1 pixel (partial volume and the reconstruction's resolution). No fine random
texture (a field of 1-2 pixels): at that scale texture and CT noise cannot be told apart. A first version drew
one (2 to 8 HU); a network trained with it kept the noise of real scans, but so did one trained without it, so
the texture was not the measured cause (the target was: :mod:`medsr.data.prepare.ct_volumes`). The field of view
is the object's extent times a random margin, so the pixel size follows the anatomy (heads 0.35 to 0.55 mm,
bodies 0.59 to 1 mm on 512 pixels). The image is noise-free: :mod:`medsr.data.prepare.ct_volumes` makes it the
target of the simulator's whole low-dose scan. Each slice is a pure function of its generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medsr.data.synth_augment import smooth_field

AIR_HU = -1000.0
# HU ranges of the visceral regions; a region is one of these, bowel (contents with gas pockets) or lung base.
ORGANS = {"liver": (40, 75), "enhancing parenchyma": (40, 130), "enhanced kidney": (100, 250),
          "unenhanced soft tissue": (0, 40), "muscle": (30, 60), "fluid": (0, 20), "spleen": (40, 60)}
PIXEL_MM = (0.35, 1.0)  # the pixel sizes of 512-pixel slices; other sizes keep the same fields of view
KINDS = ("body", "head")


@dataclass(frozen=True)
class AnatomySlice:
    """A noise-free axial slice ``hu [H, W]`` (HU), its pixel size (mm) and what it shows (``body``/``head``)."""

    hu: np.ndarray
    pixel_mm: float
    kind: str


def pixel_size(fov: float, size: int) -> float:
    """The pixel size (mm) of a ``fov`` mm field of view on ``size`` pixels, within the range :data:`PIXEL_MM`
    (of 512-pixel slices, scaled to ``size``)."""
    low, high = (v * 512 / size for v in PIXEL_MM)
    return float(np.clip(fov / size, low, high))


class Canvas:
    """Millimetre coordinates of an image grid (rotated by ``angle`` about the centre) and the HU being painted."""

    def __init__(self, size: int, pixel_mm: float, angle: float, rng: np.random.Generator):
        centre = (np.arange(size) - (size - 1) / 2) * pixel_mm
        y, x = np.meshgrid(centre, centre, indexing="ij")
        c, s = math.cos(angle), math.sin(angle)
        self.x, self.y = c * x + s * y, -s * x + c * y
        self.size, self.pixel_mm, self.rng = size, pixel_mm, rng
        self.hu = np.full((size, size), AIR_HU, np.float32)

    def field(self, points: int) -> np.ndarray:
        """A unit-variance smooth random field with ``points`` control points per axis."""
        return smooth_field((self.size, self.size), points, self.rng)

    def ellipse(self, cx: float, cy: float, a: float, b: float, angle: float = 0.0) -> np.ndarray:
        """The normalised radius ``sqrt((u/a)^2 + (v/b)^2)`` of an ellipse centred at ``(cx, cy)`` mm."""
        c, s = math.cos(angle), math.sin(angle)
        u, v = c * (self.x - cx) + s * (self.y - cy), -s * (self.x - cx) + c * (self.y - cy)
        return np.sqrt((u / a) ** 2 + (v / b) ** 2)

    def depth(self, a: float, b: float, wobble: float, cy: float = 0.0) -> np.ndarray:
        """Approximate depth (mm) below an outline: an ellipse of semi-axes ``a, b`` whose radius varies by up to
        ``wobble`` (a fraction) with the angle (harmonics 2..5 of random phase); negative outside."""
        theta = np.arctan2(self.y - cy, self.x)
        radius = np.ones_like(theta)
        for k in range(2, 6):
            radius += self.rng.uniform(-wobble, wobble) / k * np.cos(k * theta + self.rng.uniform(0, 2 * math.pi))
        return (1 - self.ellipse(0.0, cy, a, b) / radius) * min(a, b)

    def paint(self, where: np.ndarray, low: float, high: float, texture: float = 0.0) -> None:
        """Fill ``where`` with one value drawn from ``[low, high]`` HU plus ``texture`` HU of smooth variation."""
        value = self.rng.uniform(low, high)
        if texture > 0:
            value = value + texture * self.field(int(self.rng.integers(8, 40)))[where]
        self.hu[where] = value

    def discs(self, inside: np.ndarray, count: int, radius: tuple[float, float], low: float, high: float) -> None:
        """``count`` small discs of random radius (mm) centred at random pixels of ``inside``."""
        rows, cols = np.nonzero(inside)
        if len(rows) == 0:
            return
        for i in self.rng.integers(len(rows), size=count):
            r = self.rng.uniform(*radius)
            self.paint(self.ellipse(self.x[rows[i], cols[i]], self.y[rows[i], cols[i]], r, r) < 1, low, high)

    def finish(self) -> np.ndarray:
        """The partial-volume blur, nothing below air (no fine texture: module docstring)."""
        return np.maximum(ndimage.gaussian_filter(self.hu, self.rng.uniform(0.5, 1.0)), AIR_HU).astype(np.float32)


def support(canvas: Canvas, top: float, thickness: float) -> None:
    """A table or head rest below ``top`` mm: carbon-fibre skins around a foam core, its sides curved up."""
    rng = canvas.rng
    curve = top - canvas.x**2 / rng.uniform(1500, 6000)
    half = rng.uniform(150, 260)
    below = canvas.y - curve
    across = np.abs(canvas.x) < half
    canvas.paint(across & (below > 0) & (below < thickness), -950, -800)
    for edge in (0.0, thickness):
        canvas.paint(across & (np.abs(below - edge) < rng.uniform(0.8, 2.0)), 150, 600)


def outline(rng: np.random.Generator, size: int, half_width: tuple[float, float], aspect: tuple[float, float],
            margin: tuple[float, float], rotation: float, wobble: float) -> tuple[Canvas, np.ndarray, float]:
    """The canvas and depth map (:meth:`Canvas.depth`) of an outline of random semi-axes (``half_width`` mm
    across, times ``aspect`` front to back) and orientation (up to ``rotation`` radians), the field of view its
    larger diameter times a random ``margin``; also the front-to-back semi-axis (mm)."""
    a = rng.uniform(*half_width)
    b = a * rng.uniform(*aspect)
    canvas = Canvas(size, pixel_size(2 * max(a, b) * rng.uniform(*margin), size), rng.uniform(-rotation, rotation),
                    rng)
    return canvas, canvas.depth(a, b, wobble), b


def body_slice(rng: np.random.Generator, size: int = 512) -> AnatomySlice:
    """A procedural abdomen / lower-chest slice (module docstring)."""
    canvas, depth, b = outline(rng, size, (130, 220), (0.6, 0.85), (1.08, 1.4), 0.12, 0.12)
    inside = depth > 0
    fat, muscle = rng.uniform(4, 40), rng.uniform(4, 15)
    canvas.paint(inside, 20, 60)  # skin
    canvas.paint(depth > 2, -125, -80, texture=rng.uniform(2, 8))
    canvas.paint(depth > 2 + fat, 35, 65, texture=2)
    viscera = depth > 2 + fat + muscle
    canvas.paint(viscera, -115, -70, texture=rng.uniform(2, 8))
    fields = np.stack([canvas.field(int(rng.integers(3, 9))) for _ in range(int(rng.integers(3, 9)))])
    organs = np.argmax(np.concatenate([np.full((1, size, size), rng.uniform(0.0, 0.8)), fields]), axis=0)
    ranges = list(ORGANS.values())
    for label in range(1, fields.shape[0] + 1):
        region = viscera & (organs == label)
        kind = int(rng.integers(len(ranges) + 2))
        if kind < len(ranges):
            canvas.paint(region, *ranges[kind], texture=rng.uniform(2, 10))
        elif kind == len(ranges):  # bowel: contents with gas pockets
            canvas.paint(region, 0, 45, texture=5)
            canvas.paint(region & (canvas.field(int(rng.integers(10, 30))) > rng.uniform(0.8, 1.8)), -1000, -950)
        else:  # lung base with vessels
            canvas.paint(region, -900, -720, texture=20)
            canvas.discs(region, int(rng.integers(5, 30)), (0.6, 3.0), -100, 80)
    canvas.discs(viscera & (depth > 15), int(rng.integers(5, 30)), (1.0, 4.0), 80, 300)  # vessels
    canvas.discs(viscera & (depth > 20), int(rng.integers(0, 5)), (3.0, 20.0), -20, 140)  # lesions
    spine_x, spine_y, radius = rng.uniform(-10, 10), b * rng.uniform(0.3, 0.55), rng.uniform(13, 24)
    for side in (-1, 1):  # paraspinal muscles
        canvas.paint(canvas.ellipse(spine_x + side * radius * 1.5, spine_y + radius * 1.3, radius, radius * 0.8)
                     < 1, 35, 65, texture=3)
    body = canvas.ellipse(spine_x, spine_y, radius, radius * rng.uniform(0.8, 1.0))
    spinous = canvas.ellipse(spine_x, spine_y + radius * 1.6, radius * 0.25, radius * 0.7)
    canvas.paint((body < 1) | (spinous < 1), 500, 1300)
    canvas.paint(body < 1 - rng.uniform(1.5, 3.5) / radius, 150, 400, texture=rng.uniform(10, 40))
    aorta = rng.uniform(8, 14)
    canvas.paint(canvas.ellipse(spine_x - rng.uniform(5, 25), spine_y - radius - aorta - 3, aorta, aorta) < 1,
                 *((120, 350) if rng.random() < 0.7 else (30, 55)))
    cava = rng.uniform(8, 15)
    canvas.paint(canvas.ellipse(spine_x + rng.uniform(15, 40), spine_y - radius - cava - 5, cava, cava * 0.7) < 1,
                 60, 220)
    if rng.random() < 0.6:  # ribs in the muscle wall
        ring = (depth > fat) & (depth < fat + muscle + 4) & (canvas.y < spine_y + radius)
        for _ in range(int(rng.integers(4, 12))):
            rows, cols = np.nonzero(ring)
            if len(rows) == 0:
                break
            i = int(rng.integers(len(rows)))
            r = rng.uniform(3, 7)
            rib = canvas.ellipse(canvas.x[rows[i], cols[i]], canvas.y[rows[i], cols[i]], r, r * 0.7,
                                 rng.uniform(0, math.pi))
            canvas.paint(rib < 1, 400, 1000)
            canvas.paint(rib < 0.6, 150, 300)
    if rng.random() < 0.8:
        support(canvas, b * (1 + rng.uniform(0.0, 0.05)) + 2, rng.uniform(8, 40))
    return AnatomySlice(canvas.finish(), canvas.pixel_mm, "body")


def head_slice(rng: np.random.Generator, size: int = 512) -> AnatomySlice:
    """A procedural head slice (module docstring)."""
    canvas, depth, b = outline(rng, size, (60, 80), (1.1, 1.3), (1.12, 1.5), 0.25, 0.06)
    inside = depth > 0
    scalp, skull = rng.uniform(3, 8), rng.uniform(3, 10)
    canvas.paint(inside, 10, 60, texture=4)
    canvas.paint((depth > scalp * 0.4) & (depth < scalp * 0.7), -110, -40)
    bone = depth > scalp
    canvas.paint(bone, 900, 1900, texture=60)
    if rng.random() < 0.7:  # diploe
        canvas.paint(bone & (depth > scalp + skull * 0.35) & (depth < scalp + skull * 0.65), 300, 800, texture=60)
    brain = depth > scalp + skull
    inner = depth - scalp - skull
    canvas.paint(brain, 32, 45, texture=2)  # grey matter
    canvas.paint(brain & (inner > rng.uniform(2, 6) + 3 * canvas.field(12)), 20, 32, texture=2)  # white matter
    deep = np.stack([canvas.field(int(rng.integers(4, 8))) for _ in range(2)])
    canvas.paint(brain & (inner > 25) & (deep.max(axis=0) > rng.uniform(1.2, 2.0)), 32, 45, texture=2)
    canvas.paint(brain & (inner < rng.uniform(3, 9)) & (canvas.field(int(rng.integers(25, 60))) > rng.uniform(
        0.3, 1.2)), 0, 15)  # sulci
    if rng.random() < 0.85:  # ventricles
        width, length, offset = rng.uniform(2, 12), rng.uniform(15, 35), rng.uniform(3, 12)
        for side in (-1, 1):
            canvas.paint(canvas.ellipse(side * offset, rng.uniform(-10, 5), width, length, side * rng.uniform(0, 0.4))
                         < 1, 0, 15)
    if rng.random() < 0.7:  # falx
        canvas.paint(brain & (np.abs(canvas.x) < rng.uniform(0.4, 1.0)) & (inner > 3), 50, 120)
    canvas.discs(brain & (inner > 15), int(rng.integers(0, 4)), (0.8, 3.0), 100, 500)  # calcifications
    canvas.discs(brain & (inner > 10), int(rng.integers(0, 3)), (3.0, 18.0), *(
        (55, 90) if rng.random() < 0.5 else (8, 22)))  # haemorrhage or infarct
    if rng.random() < 0.3:  # skull base: bone blocks with air cells
        base = brain & (canvas.field(int(rng.integers(4, 10))) > rng.uniform(0.8, 1.5))
        canvas.paint(base, 600, 1600, texture=80)
        canvas.discs(base, int(rng.integers(3, 20)), (1.0, 6.0), -1000, -900)
    if rng.random() < 0.7:
        support(canvas, b * (1 + rng.uniform(0.0, 0.05)) + 2, rng.uniform(10, 40))
    return AnatomySlice(canvas.finish(), canvas.pixel_mm, "head")


def anatomy_slice(rng: np.random.Generator, kind: str, size: int = 512) -> AnatomySlice:
    """One slice of ``kind`` (``body`` or ``head``)."""
    if kind not in KINDS:
        raise ValueError(f"anatomy kind must be one of {KINDS}, got {kind!r}")
    return (body_slice if kind == "body" else head_slice)(rng, size)
