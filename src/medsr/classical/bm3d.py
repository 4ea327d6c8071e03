"""A BM3D-style collaborative filter for stationary colored (correlated) noise, in plain torch.

After Dabov, Foi, Katkovnik & Egiazarian, "Image denoising by sparse 3-D transform-domain collaborative
filtering", IEEE TIP 16(8), 2007, with the noise described by its power spectrum as in Mäkinen, Azzari & Foi,
"Collaborative filtering of correlated noise: exact transform-domain variance for improved shrinkage and
patch matching", IEEE TIP 29, 2020 (written from the papers; no code taken). Two stages:

1. **Hard thresholding.** Reference blocks (``block x block``) on a grid of stride ``step`` (the last row and column
   always included, so every pixel is covered); for each, the ``group_ht`` most similar blocks (least squared
   difference) within a ``search x search`` window of positions, leaving out the blocks shifted by less than
   ``exclude`` pixels in both directions (with correlated noise they share most of the reference's noise, so
   matching prefers them and averaging them removes little of it). The group's 3-D transform is the orthonormal 2-D DCT
   of each block, then the orthonormal Haar transform along the group; coefficients below ``lambda_ht`` noise
   standard deviations are zeroed; the inverse transform gives an estimate of every block of the group.
2. **Wiener filtering.** Groups of ``group_wiener`` blocks matched on the stage-1 estimate; the same 3-D transform
   of the noisy and of the stage-1 groups; the noisy spectrum is multiplied by ``B^2 / (B^2 + v)``, ``B`` the
   stage-1 spectrum and ``v`` the noise variance of the coefficient.

Colored noise: the variance ``v`` of a 2-D DCT coefficient with basis function ``b`` under stationary noise of power
spectrum ``P`` is ``mean_f |DFT(b)(f)|^2 P(f)`` on a grid of at least twice the block (see
:mod:`medsr.classical.noise` for the PSD convention); blocks of a group are taken as independent, so every Haar
coefficient of a 2-D frequency has that frequency's ``v`` (Mäkinen et al. compute the exact variance of the whole
3-D spectrum; this is the simpler approximation). The approximation underestimates the noise left in a group
(matching on noisy data picks blocks whose noise resembles the reference's, and nearby blocks still correlate), so
``v`` is multiplied by ``variance_factor``. The defaults were chosen on the validation slice of
``benchmarks/classical_ct.py`` (the embedded abdomen at a simulated quarter dose, estimated PSD, RED-CNN-window
PSNR; input 25.82 dB): 8x8 blocks, ``exclude`` 3 and factor 1.25 give 31.67 dB; factor 1.0 31.64, 1.5 31.59, 2.0
with 12x12 blocks 31.06; Dabov et al.'s setting (no exclusion, factor 1) 31.47. With the earlier fan-beam simulator
(noisier heads), exclusion and factor 2 gained 2.3 dB over Dabov et al.'s setting on a 256x256 crop of the held-out
head (30.9 -> 33.2 dB). Aggregation: every block estimate, times a Kaiser window (beta ``kaiser_beta``) and its
group's weight, is added into the image, then divided by the summed weights; the group weight is the inverse of the
noise variance left in the group's spectrum (hard thresholding: the sum of ``v`` over the kept coefficients; Wiener:
the sum of ``W^2 v``). Block matching is vectorised by offset (cumulative sums of squared differences per vertical
offset and all horizontal ones, read at the reference positions); groups are processed in chunks so that memory
stays below a few hundred MB for a 512x512 image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CHUNK_VALUES = 1 << 22  # group coefficients transformed at a time


@dataclass(frozen=True)
class Bm3dParams:
    block: int = 8
    step: int = 3
    search: int = 25
    group_ht: int = 16
    group_wiener: int = 32
    lambda_ht: float = 2.7
    kaiser_beta: float = 2.0
    exclude: int = 3
    variance_factor: float = 1.25

    def check(self, shape: tuple[int, int]) -> None:
        if not (self.variance_factor > 0 and self.exclude >= 0 and self.block >= 2 and self.step >= 1):
            raise ValueError(f"invalid BM3D parameters {self}")
        if self.search % 2 == 0 or self.search < 3:
            raise ValueError(f"search must be an odd size >= 3, got {self.search}")
        for name in ("group_ht", "group_wiener"):
            n = getattr(self, name)
            if n < 1 or n & (n - 1):
                raise ValueError(f"{name} must be a power of two, got {n}")
        side = self.block + self.search
        if min(shape) < side:
            raise ValueError(f"images must be at least {side} pixels a side for block {self.block} and search "
                             f"{self.search}, got {shape[0]}x{shape[1]}")
        corner = (self.search // 2 + 1) ** 2 - self.exclude**2 + 1  # offsets open to a corner block
        if max(self.group_ht, self.group_wiener) > corner:
            raise ValueError(f"groups larger than the {corner} blocks a corner's search window holds")


def dct_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal DCT-II, ``[n, n]`` (rows: basis functions)."""
    k = torch.arange(n, dtype=dtype)[:, None]
    m = torch.arange(n, dtype=dtype)[None, :]
    c = torch.cos(math.pi * (2 * m + 1) * k / (2 * n)) * math.sqrt(2 / n)
    c[0] /= math.sqrt(2)
    return c


def haar_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Orthonormal Haar transform, ``[n, n]``, ``n`` a power of two (rows: the scaling function, then wavelets from
    coarse to fine)."""
    h = torch.ones(1, 1, dtype=dtype)
    while h.shape[0] < n:
        m = h.shape[0]
        h = torch.cat([torch.kron(h, torch.tensor([[1.0, 1.0]], dtype=dtype)),
                       torch.kron(torch.eye(m, dtype=dtype), torch.tensor([[1.0, -1.0]], dtype=dtype))])
    return h / h.norm(dim=1, keepdim=True)


def coefficient_variances(psd: torch.Tensor, block: int) -> torch.Tensor:
    """Noise variance of each coefficient of the 2-D DCT of ``block x block`` blocks (``[block * block]``, the
    order of ``kron(C, C)``) under the stationary noise of ``psd`` (``[M, M]``, ``M >= block``; a grid smaller
    than ``2 block`` is first zero-extended in the lag domain, so no lag within a block wraps around)."""
    size = psd.shape[-1]
    if size < block or psd.shape[-2] != size:
        raise ValueError(f"the PSD grid {tuple(psd.shape)} must be square and at least the {block}-pixel block")
    psd = psd.to(torch.float64)
    if size < 2 * block:
        lags = torch.arange(-(size // 2) + 1, size // 2)
        autocov = torch.zeros(2 * block, 2 * block, dtype=torch.float64)
        wide, narrow = lags % (2 * block), lags % size
        autocov[wide[:, None], wide[None, :]] = torch.fft.ifft2(psd).real[narrow[:, None], narrow[None, :]]
        psd = torch.fft.fft2(autocov).real
    c = dct_matrix(block)
    basis = (c[:, None, :, None] * c[None, :, None, :]).reshape(block * block, block, block)
    spectra = torch.fft.fft2(basis, s=tuple(psd.shape)).abs() ** 2
    return (spectra * psd).mean(dim=(-2, -1))


def _grid(n: int, block: int, step: int) -> torch.Tensor:
    last = n - block
    return torch.unique(torch.cat([torch.arange(0, last + 1, step), torch.tensor([last])]))


def match_blocks(image: torch.Tensor, params: Bm3dParams, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left corners ``(ys, xs)``, each ``[R, k]``, of the ``k`` blocks closest to each reference block (the
    reference first), references in row-major order of the grid."""
    H, W = image.shape
    b, r = params.block, params.search // 2
    ry, rx = _grid(H, b, params.step), _grid(W, b, params.step)
    padded = F.pad(image[None, None], (r, r, r, r), mode="replicate")[0, 0]
    dx = torch.arange(-r, r + 1)
    cols_bad = ((rx[None, :] + dx[:, None] < 0) | (rx[None, :] + dx[:, None] > W - b))[None]  # [1, S, nx]
    distances = []
    for dy in range(-r, r + 1):
        shifted = padded[r + dy: r + dy + H].unfold(1, W, 1)  # [H, S, W]: every horizontal offset, a view
        rows = F.pad(((shifted - image[:, None, :]) ** 2).cumsum(2), (1, 0))
        rows = F.pad((rows[:, :, rx + b] - rows[:, :, rx]).cumsum(0), (0, 0, 0, 0, 1, 0))  # [H + 1, S, nx]
        d = rows[ry + b] - rows[ry]  # [ny, S, nx]: squared differences summed over each block
        rows_bad = ((ry + dy < 0) | (ry + dy > H - b))[:, None, None]
        distances.append(d.masked_fill(rows_bad | cols_bad, math.inf))
    # [R, O], offset o = (dy index) * S + dx index
    dist = torch.stack(distances).permute(1, 3, 0, 2).reshape(len(ry) * len(rx), -1)
    near = (dx.abs()[:, None] < params.exclude) & (dx.abs()[None, :] < params.exclude)
    dist[:, near.reshape(-1)] = math.inf  # blocks sharing most of the reference's (correlated) noise
    dist[:, r * len(dx) + r] = -1  # the reference itself first, even among identical blocks (flat padding)
    best = dist.topk(k, dim=1, largest=False).indices
    oy, ox = best // len(dx) - r, best % len(dx) - r
    gy, gx = torch.meshgrid(ry, rx, indexing="ij")
    return gy.reshape(-1, 1) + oy, gx.reshape(-1, 1) + ox


class _Aggregator:
    """Weighted, Kaiser-windowed sums of block estimates over the image."""

    def __init__(self, shape: tuple[int, int], params: Bm3dParams, dtype: torch.dtype):
        H, W = shape
        b = params.block
        self.width = W
        self.offsets = (torch.arange(b)[:, None] * W + torch.arange(b)[None, :]).reshape(-1)
        w = torch.kaiser_window(b, periodic=False, beta=params.kaiser_beta, dtype=dtype)
        self.window = (w[:, None] * w[None, :]).reshape(-1)
        self.num = torch.zeros(H * W, dtype=dtype)
        self.den = torch.zeros(H * W, dtype=dtype)

    def add(self, ys: torch.Tensor, xs: torch.Tensor, blocks: torch.Tensor, weights: torch.Tensor) -> None:
        """``blocks [R, k, b*b]`` at corners ``ys, xs [R, k]``, group weights ``[R]``."""
        index = ((ys * self.width + xs)[..., None] + self.offsets).reshape(-1)
        w = (weights[:, None, None] * self.window).expand_as(blocks)
        self.num.index_add_(0, index, (blocks * w).reshape(-1))
        self.den.index_add_(0, index, w.reshape(-1))

    def result(self, shape: tuple[int, int]) -> torch.Tensor:
        return (self.num / self.den).reshape(shape)


def _stage(noisy: torch.Tensor, guide: torch.Tensor | None, variances: torch.Tensor,
           params: Bm3dParams) -> torch.Tensor:
    """One BM3D stage: hard thresholding when ``guide`` is None, else Wiener filtering guided by ``guide``."""
    H, W = noisy.shape
    b = params.block
    k = params.group_ht if guide is None else params.group_wiener
    t2 = torch.kron(dct_matrix(b), dct_matrix(b)).to(noisy.dtype)
    haar = haar_matrix(k).to(noisy.dtype)
    v = variances.to(noisy.dtype)

    def coefficients(image: torch.Tensor) -> torch.Tensor:  # [positions, b*b], position = y * (W - b + 1) + x
        return F.unfold(image[None, None], b)[0].T @ t2.T

    ys, xs = match_blocks(noisy if guide is None else guide, params, k)
    noisy_coef = coefficients(noisy)
    guide_coef = None if guide is None else coefficients(guide)
    out = _Aggregator((H, W), params, noisy.dtype)
    chunk = max(1, CHUNK_VALUES // (k * b * b))
    for start in range(0, ys.shape[0], chunk):
        y, x = ys[start: start + chunk], xs[start: start + chunk]
        position = y * (W - b + 1) + x
        spectrum = haar @ noisy_coef[position]
        if guide_coef is None:
            kept = spectrum.abs() > params.lambda_ht * v.sqrt()
            spectrum = spectrum * kept
            left = (kept * v).sum(dim=(1, 2))
        else:
            power = (haar @ guide_coef[position]) ** 2
            gain = power / (power + v)
            spectrum = spectrum * gain
            left = (gain**2 * v).sum(dim=(1, 2))
        blocks = haar.T @ spectrum @ t2
        out.add(y, x, blocks, 1 / left.clamp(min=float(v.min()) * 1e-3))
    return out.result((H, W))


def bm3d(image: torch.Tensor, psd: torch.Tensor, params: Bm3dParams = Bm3dParams()) -> torch.Tensor:
    """Denoise one image ``[H, W]`` with stationary noise of power spectrum ``psd`` (``[M, M]``, same units squared;
    :mod:`medsr.classical.noise`)."""
    if image.ndim != 2:
        raise ValueError(f"expected one image [H, W], got shape {tuple(image.shape)}")
    params.check(tuple(image.shape))
    variances = coefficient_variances(psd, params.block) * params.variance_factor
    if not float(variances.min()) > 0:
        raise ValueError("the noise PSD gives a zero-variance DCT coefficient; a positive PSD is needed")
    x = image.to(torch.float32)
    basic = _stage(x, None, variances, params)
    return _stage(x, basic, variances, params).to(image.dtype)
