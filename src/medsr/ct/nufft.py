"""Non-uniform FFT of 2-D images by Kaiser-Bessel gridding (type 2: image -> spectrum at arbitrary frequencies;
type 1, its adjoint: values at arbitrary frequencies -> image), in plain torch on the device of the tensors.

Method (J. A. Fessler and B. P. Sutton, IEEE Trans. Signal Process. 51(2), 2003; P. J. Beatty et al., IEEE Trans.
Med. Imaging 24(6), 2005): with a kernel ``phi`` of ``WIDTH`` samples on a grid oversampled ``OVERSAMPLING`` times
(``G`` points per axis) and ``phi_hat`` its continuous Fourier transform,
``exp(-2 pi i k n) ~ sum_j phi(G k - j) exp(-2 pi i j n / G) / phi_hat(n / G)``, so the DTFT of an image is an FFT
of the image divided by ``phi_hat`` (deapodisation), read near each frequency with ``WIDTH x WIDTH`` kernel
weights. ``phi`` is the Kaiser-Bessel window with Beatty's ``beta``; ``phi_hat`` is integrated numerically.
Relative error about 1e-3 for the defaults (``WIDTH`` 6: 1e-5).

Coordinates: pixel ``(i, j)`` of an ``[H, W]`` image sits at ``(x, y) = (j - (W - 1) / 2, (H - 1) / 2 - i)`` (pixel
units, ``y`` up, as in :mod:`medsr.ct.geometry`); frequencies ``(kx, ky)`` in cycles per pixel.
"""

from __future__ import annotations

import math

import torch

OVERSAMPLING = 2
WIDTH = 4
QUADRATURE = 2048  # samples of phi for its Fourier transform


def _beta() -> float:
    return math.pi * math.sqrt((WIDTH / OVERSAMPLING) ** 2 * (OVERSAMPLING - 0.5) ** 2 - 0.8)


def _kernel(u: torch.Tensor) -> torch.Tensor:
    """Kaiser-Bessel window of ``WIDTH`` grid samples at offsets ``u`` (zero outside)."""
    arg = torch.clamp(1 - (2 * u / WIDTH) ** 2, min=0)
    return torch.where(arg > 0, torch.special.i0(_beta() * torch.sqrt(arg)), torch.zeros_like(u))


def _deapodisation(n: int, grid: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``phi_hat`` at the integer coordinates ``i - n // 2`` of an axis of ``n`` pixels (``[n]``)."""
    u = (torch.arange(QUADRATURE, dtype=torch.float64) + 0.5) / QUADRATURE * WIDTH - WIDTH / 2
    coordinate = torch.arange(n, dtype=torch.float64) - n // 2
    phase = 2 * math.pi * u[None, :] * coordinate[:, None] / grid
    values = (_kernel(u)[None, :] * torch.cos(phase)).sum(1) * (WIDTH / QUADRATURE)
    return values.to(device, dtype)


class Grid:
    """The oversampled FFT grid of ``[H, W]`` images: :meth:`spectrum` (type 2, with :meth:`Plan.read`) and
    :meth:`image` (type 1, from :meth:`Plan.spread`)."""

    def __init__(self, shape: tuple[int, int], dtype: torch.dtype, device: torch.device | str | None = None):
        self.shape = tuple(shape)
        h, w = self.shape
        self.size = (OVERSAMPLING * h, OVERSAMPLING * w)
        self.dtype, self.device = dtype, device
        self.complex = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.apod = (_deapodisation(h, self.size[0], dtype, device)[:, None]
                     * _deapodisation(w, self.size[1], dtype, device)[None, :])

    def spectrum(self, image: torch.Tensor) -> torch.Tensor:
        """The FFT ``[B, G]`` of deapodised images ``[B, H, W]`` (row 0 at the top) on the grid, pixel
        ``(i', j) = (H - 1 - i, j)`` (rows ``y`` up) at index ``(i' - H // 2, j - W // 2)``."""
        h, w = self.shape
        padded = image.new_zeros(image.shape[0], *self.size)
        padded[:, :h, :w] = image.flip(-2) / self.apod
        padded = torch.roll(padded, shifts=(-(h // 2), -(w // 2)), dims=(-2, -1))
        return torch.fft.fft2(padded.to(self.complex)).reshape(image.shape[0], -1)

    def zeros(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.size[0] * self.size[1], dtype=self.complex, device=self.device)

    def image(self, grid: torch.Tensor) -> torch.Tensor:
        """Images ``[B, H, W]`` (real part) from a grid of spread values ``[B, G]``."""
        h, w = self.shape
        image = torch.fft.ifft2(grid.reshape(-1, *self.size)) * (self.size[0] * self.size[1])
        image = torch.roll(image, shifts=(h // 2, w // 2), dims=(-2, -1))[:, :h, :w]
        return (image.real / self.apod).flip(-2)


class Plan:
    """Frequencies ``k [P, 2]`` (cycles per pixel, ``(kx, ky)``) on a :class:`Grid`: the grid neighbours and
    kernel weights of every frequency, computed once and used for any batch."""

    def __init__(self, grid: Grid, k: torch.Tensor):
        h, w = grid.shape
        offsets = torch.arange(WIDTH, device=k.device) - (WIDTH // 2 - 1)
        axes = []
        for axis, size in ((1, grid.size[0]), (0, grid.size[1])):  # rows follow ky, columns kx
            position = k[:, axis] * size
            nearest = torch.floor(position).long()[:, None] + offsets[None, :]
            axes.append((nearest % size, _kernel(position[:, None] - nearest.to(k.dtype))))
        (rows, wr), (cols, wc) = axes
        self.index = (rows[:, :, None] * grid.size[1] + cols[:, None, :]).reshape(-1).int()
        self.weight = (wr[:, :, None] * wc[:, None, :]).reshape(k.shape[0], -1, 1)
        # the true coordinates are the grid's plus half a pixel on even axes: a phase
        rest = torch.tensor([w // 2 - (w - 1) / 2, h // 2 - (h - 1) / 2], device=k.device, dtype=k.dtype)
        self.phase = torch.exp(-2j * math.pi * (k * rest).sum(1).to(grid.complex))

    def read(self, spectrum: torch.Tensor) -> torch.Tensor:
        """The DTFT ``sum_n image[n] exp(-2 pi i k . x_n)`` at every frequency, ``[B, P]``, from
        :meth:`Grid.spectrum`."""
        taps = torch.view_as_real(spectrum).index_select(1, self.index)
        taps = taps.reshape(spectrum.shape[0], *self.weight.shape[:2], 2)
        return torch.view_as_complex((taps * self.weight).sum(2).contiguous()) * self.phase

    def spread(self, values: torch.Tensor, grid: torch.Tensor) -> None:
        """Add ``values [B, P]`` to ``grid`` (from :meth:`Grid.zeros`) so that :meth:`Grid.image` gives
        ``sum_p values[p] exp(2 pi i k_p . x_n)``."""
        spread = torch.view_as_real(values * self.phase.conj())[:, :, None, :] * self.weight
        torch.view_as_real(grid).index_add_(1, self.index, spread.reshape(values.shape[0], -1, 2))
