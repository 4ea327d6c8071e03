"""CT evaluation windows (HU) and noise texture measures: ROI noise and the noise power spectrum.

Windows: images in HU are clipped to ``[C - W/2, C + W/2]`` and the data range of PSNR/SSIM is the width ``W``.
Published windows differ paper to paper, so each preset names its source:

* ``redcnn``: [-160, 240] HU (Chen et al., "Low-dose CT with a residual encoder-decoder convolutional neural
  network", IEEE TMI 2017; also CTformer), data range 400 HU.
* ``dugan``: [-300, 300] HU (Huang et al., "DU-GAN", IEEE TMI 2022), data range 600 HU.
* ``corediff``: [-1000, 1000] HU (Gao et al., "CoreDiff", IEEE TMI 2024), data range 2000 HU.
* ``ldctbench-chest|abdomen|neuro``: C/W -600/1500, 50/400, 40/80 HU (Eulig et al., "Benchmarking deep
  learning-based low-dose CT image denoising algorithms", Med. Phys. 2024), data range = W.

Noise power spectrum (ICRU Report 87; Dolly et al., J. Appl. Clin. Med. Phys. 2016):
``NPS(fx, fy) = dx dy / (Nx Ny) <|DFT(n - mean(n))|^2>`` over noise-only ROIs ``n``; its integral over the
frequency plane equals the noise variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medsr.errors import InputError, as_number, require
from medsr.metrics.image import psnr, ssim


@dataclass(frozen=True)
class CTWindow:
    """Window centre and width in HU, and where it comes from."""

    center: float
    width: float
    source: str = "given"

    @property
    def low(self) -> float:
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        return self.center + self.width / 2

    def describe(self) -> str:
        return (f"C {self.center:g} / W {self.width:g} HU = [{self.low:g}, {self.high:g}] ({self.source}); pred and "
                f"reference clipped to it, data range = W = {self.width:g} HU")


CT_PRESETS = {
    "redcnn": CTWindow(40, 400, "redcnn preset: Chen et al., IEEE TMI 2017"),
    "dugan": CTWindow(0, 600, "dugan preset: Huang et al., IEEE TIM 2022"),
    "corediff": CTWindow(0, 2000, "corediff preset: Gao et al., IEEE TMI 2024"),
    "ldctbench-chest": CTWindow(-600, 1500, "ldctbench-chest preset: Eulig et al., Med. Phys. 2024"),
    "ldctbench-abdomen": CTWindow(50, 400, "ldctbench-abdomen preset: Eulig et al., Med. Phys. 2024"),
    "ldctbench-neuro": CTWindow(40, 80, "ldctbench-neuro preset: Eulig et al., Med. Phys. 2024"),
}


def parse_ct_window(window: str | None, preset: str | None) -> CTWindow | None:
    """``--ct-window C,W`` or ``--ct-preset NAME`` (not both) as a :class:`CTWindow`; ``None`` without either."""
    require(window is None or preset is None, "--ct-window", "and --ct-preset exclude each other")
    if preset is not None:
        require(preset in CT_PRESETS, "--ct-preset", f"must be one of {', '.join(CT_PRESETS)}, got {preset!r}")
        return CT_PRESETS[preset]
    if window is None:
        return None
    parts = window.split(",")
    if len(parts) != 2:
        raise InputError("--ct-window", f"must be CENTER,WIDTH in HU, e.g. 40,400; got {window!r}")
    center, width = (as_number(p, "--ct-window") for p in parts)
    require(width > 0, "--ct-window", f"width must be positive, got {width:g}")
    return CTWindow(center, width)


def windowed_scores(pred: torch.Tensor, ref: torch.Tensor, window: CTWindow) -> tuple[torch.Tensor, torch.Tensor]:
    """PSNR and SSIM (Wang 2004 preset, slices averaged) per item of HU images ``[B, 1, H, W]`` or volumes
    ``[B, 1, Z, H, W]``, both clipped to ``window``, data range = its width (as ``medsr evaluate --ct-window``)."""
    x, y = (t.to(torch.float64).clamp(window.low, window.high) for t in (pred, ref))
    return psnr(x, y, window.width), ssim(x, y, window.width)


def scores_in_windows(pred: np.ndarray, ref: np.ndarray, presets: tuple[str, ...]) -> dict[str, float]:
    """``{psnr_<preset>, ssim_<preset>}`` of one HU image or volume (:func:`windowed_scores`) per preset name."""
    x, y = torch.from_numpy(np.asarray(pred))[None, None], torch.from_numpy(np.asarray(ref))[None, None]
    out = {}
    for name in presets:
        p, s = windowed_scores(x, y, CT_PRESETS[name])
        out[f"psnr_{name}"], out[f"ssim_{name}"] = float(p), float(s)
    return out


def hu_noise(image: np.ndarray, roi: np.ndarray) -> float:
    """Noise standard deviation (HU, sample std) of ``image`` inside the boolean ``roi`` of a uniform region."""
    values = np.asarray(image, dtype=np.float64)[np.asarray(roi, dtype=bool)]
    if values.size < 2:
        raise ValueError("the ROI must hold at least two pixels")
    return float(values.std(ddof=1))


def noise_power_spectrum(rois: np.ndarray, pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """2-D NPS ``[H, W]`` (zero frequency at the centre, units HU^2 mm^2 for HU images) of noise-only ROIs
    ``[..., H, W]`` (each ROI's mean removed, the spectra averaged), and the frequencies ``[W]`` (1/mm) of its
    axes."""
    rois = np.asarray(rois, dtype=np.float64)
    h, w = rois.shape[-2:]
    flat = rois.reshape(-1, h, w)
    spectra = np.abs(np.fft.fft2(flat - flat.mean(axis=(1, 2), keepdims=True))) ** 2
    nps = np.fft.fftshift(spectra.mean(0)) * pixel_size**2 / (h * w)
    return nps, np.fft.fftshift(np.fft.fftfreq(w, pixel_size))


def radial_nps(rois: np.ndarray, pixel_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged NPS: ring centres ``f_k = k / (N dx)`` (1/mm, up to the Nyquist frequency) and the mean
    of the 2-D NPS over the frequencies within half a ring width of each (square ROIs, ``N`` pixels a side)."""
    nps, _ = noise_power_spectrum(rois, pixel_size)
    h, w = nps.shape
    if h != w:
        raise ValueError(f"radial NPS needs square ROIs, got {h} x {w}")
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(h)), np.fft.fftshift(np.fft.fftfreq(w)), indexing="ij")
    ring = np.rint(np.hypot(fx, fy) * h).astype(int)
    n_rings = h // 2 + 1
    sums = np.bincount(ring.ravel(), nps.ravel(), minlength=n_rings)[:n_rings]
    counts = np.bincount(ring.ravel(), minlength=n_rings)[:n_rings]
    return np.arange(n_rings) / (h * pixel_size), sums / counts
