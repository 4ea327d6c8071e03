"""CT evaluation windows (HU) and noise texture measures: ROI noise and the noise power spectrum.

Two kinds of window, each preset naming its source:

* clipped (:class:`CTWindow`): images in HU are clipped to ``[C - W/2, C + W/2]``, the data range of PSNR/SSIM is
  the width ``W`` and SSIM is the ``wang`` preset (Gaussian 11x11, :mod:`medsr.metrics.image`).

  - ``redcnn``: [-160, 240] HU (Chen et al., "Low-dose CT with a residual encoder-decoder convolutional neural
    network", IEEE TMI 2017; also CTformer), data range 400 HU.
  - ``dugan``: [-300, 300] HU (Huang et al., "DU-GAN", IEEE TIM 2022), data range 600 HU.
  - ``corediff``: [-1000, 1000] HU (Gao et al., "CoreDiff", IEEE TMI 2024), data range 2000 HU.

  Their reference code scores slice by slice and averages over the test slices (SSinyu/RED-CNN ``solver.py``,
  Hzzone/DU-GAN ``models/basic_template.py``, qgao21/CoreDiff ``models/corediff/corediff.py``), as these presets
  do. Their SSIM differs at the borders: an 11x11 Gaussian filtered over the whole image with zero padding
  (RED-CNN, CoreDiff) or reflected borders (DU-GAN, which also clamps the map to [0, 1]), where ``wang`` averages
  the valid region; CoreDiff's data range is each slice's max - min, not W.
* LDCT-bench (:class:`LDCTBenchWindow`): ``ldctbench-chest|abdomen|neuro``, C/W -600/1500, 50/400, 40/80 HU
  (Eulig et al., "Benchmarking deep learning-based low-dose CT image denoising algorithms", Med. Phys. 2024;
  eeulig/ldct-benchmark, ``apply_center_width`` and ``compute_metric``): HU mapped to [0, 1] by
  ``(HU - (C - 0.5)) / (W - 1) + 0.5`` clipped to [0, 1] (the linear VOI LUT of DICOM PS3.3 C.11.2.1.2.1),
  PSNR with data range 1, SSIM with scikit-image's defaults (the ``skimage`` preset: 7x7 uniform window, sample
  covariance, K1 0.01, K2 0.03, mean over the valid region) with data range 1, both per slice, averaged over the
  slices of every patient of an anatomy. Their code works on HU + 1024 with C + 1024; the offset cancels.

Reduction (:data:`REDUCTIONS`): ``slice`` (default, as every source above) scores each 2-D slice and averages over
slices; ``volume`` pools the squared error of a whole volume into one PSNR (SSIM is a mean over slices either way).

Noise power spectrum (ICRU Report 87; Dolly et al., J. Appl. Clin. Med. Phys. 2016):
``NPS(fx, fy) = dx dy / (Nx Ny) <|DFT(n - mean(n))|^2>`` over noise-only ROIs ``n``; its integral over the
frequency plane equals the noise variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from medsr.errors import InputError, as_number, require
from medsr.metrics.image import psnr, ssim

REDUCTIONS = ("slice", "volume")
# Plausible --ct-window values (HU). Clinical windows (brain 40/80, soft tissue 40/400, lung -600/1500, bone
# 400/1800, corediff's 0/2000) lie well inside; a swapped pair such as 400,40 is caught by the last rule: a window
# wholly above soft tissue is a bone window, 1000 HU wide or more.
MAX_WIDTH = 5000.0
CENTER_RANGE = (-1500.0, 3000.0)
NARROW_ABOVE, NARROW_WIDTH = 100.0, 500.0


@dataclass(frozen=True)
class CTWindow:
    """Window centre and width in HU, where it comes from, and how images are scored in it (clipped to the
    window, data range = its width, SSIM preset ``ssim_preset``). ``fixed_ssim``: the protocol admits no other
    SSIM preset."""

    fixed_ssim: ClassVar[bool] = False
    center: float
    width: float
    source: str = "given"
    ssim_preset: str = "wang"

    @property
    def low(self) -> float:
        """The HU value at and below which the windowed image is constant."""
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        """The HU value at and above which the windowed image is constant."""
        return self.center + self.width / 2

    @property
    def data_range(self) -> float:
        return self.width

    @property
    def floor(self) -> float:
        """The lowest value of the windowed image."""
        return self.low

    def apply(self, hu: torch.Tensor) -> torch.Tensor:
        """The windowed image (float64) of HU values."""
        return hu.to(torch.float64).clamp(self.low, self.high)

    def mapping(self) -> str:
        """How :meth:`apply` maps HU, in words."""
        return f"pred and reference clipped to [{self.low:g}, {self.high:g}] HU, data range = W = {self.width:g} HU"

    def describe(self) -> str:
        return (f"C {self.center:g} / W {self.width:g} HU ({self.source}); {self.mapping()}; "
                f"SSIM preset {self.ssim_preset}")


@dataclass(frozen=True)
class LDCTBenchWindow(CTWindow):
    """LDCT-bench's ``apply_center_width``: HU to [0, 1], linear between ``C - 0.5 -+ (W - 1) / 2``, data range
    1, scikit-image's default SSIM."""

    fixed_ssim: ClassVar[bool] = True
    ssim_preset: str = "skimage"

    @property
    def low(self) -> float:
        return self.center - 0.5 - (self.width - 1) / 2

    @property
    def high(self) -> float:
        return self.center - 0.5 + (self.width - 1) / 2

    @property
    def data_range(self) -> float:
        return 1.0

    @property
    def floor(self) -> float:
        return 0.0

    def apply(self, hu: torch.Tensor) -> torch.Tensor:
        return ((hu.to(torch.float64) - (self.center - 0.5)) / (self.width - 1) + 0.5).clamp_(0.0, 1.0)

    def mapping(self) -> str:
        return (f"pred and reference mapped to [0, 1] by (HU - (C - 0.5)) / (W - 1) + 0.5, clipped (linear on "
                f"[{self.low:g}, {self.high:g}] HU), data range 1")


_EULIG = "Eulig et al., Med. Phys. 2024 (eeulig/ldct-benchmark)"
CT_PRESETS = {
    "redcnn": CTWindow(40, 400, "redcnn preset: Chen et al., IEEE TMI 2017"),
    "dugan": CTWindow(0, 600, "dugan preset: Huang et al., IEEE TIM 2022"),
    "corediff": CTWindow(0, 2000, "corediff preset: Gao et al., IEEE TMI 2024"),
    "ldctbench-chest": LDCTBenchWindow(-600, 1500, f"ldctbench-chest preset: {_EULIG}"),
    "ldctbench-abdomen": LDCTBenchWindow(50, 400, f"ldctbench-abdomen preset: {_EULIG}"),
    "ldctbench-neuro": LDCTBenchWindow(40, 80, f"ldctbench-neuro preset: {_EULIG}"),
}
DENOISE_WINDOWS = ("redcnn", "ldctbench-abdomen")  # where task: denoise validates and medsr test scores


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
    swapped = "; centre and width swapped? (C,W: e.g. 40,400 soft tissue, -600,1500 lung)"
    require(width <= MAX_WIDTH, "--ct-window", f"width {width:g} HU is wider than {MAX_WIDTH:g} HU{swapped}")
    require(CENTER_RANGE[0] <= center <= CENTER_RANGE[1], "--ct-window",
            f"centre {center:g} HU is outside [{CENTER_RANGE[0]:g}, {CENTER_RANGE[1]:g}] HU{swapped}")
    window = CTWindow(center, width)
    require(window.low <= NARROW_ABOVE or width >= NARROW_WIDTH, "--ct-window",
            f"C {center:g} / W {width:g} spans only [{window.low:g}, {window.high:g}] HU, no clinical window "
            f"(narrower than {NARROW_WIDTH:g} HU and all above {NARROW_ABOVE:g} HU){swapped}")
    return window


def reduction_text(reduction: str) -> str:
    """How a volume's slices make one score under ``reduction`` (:data:`REDUCTIONS`), for protocol headers."""
    if reduction == "slice":
        return "per slice, then the mean over slices"
    return "PSNR of the whole volume's squared error, SSIM the mean over slices"


def windowed_scores(pred: torch.Tensor, ref: torch.Tensor, window: CTWindow, reduction: str = "slice"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """PSNR and SSIM per item of HU images ``[B, 1, H, W]`` or volumes ``[B, 1, Z, H, W]`` in ``window``
    (:meth:`CTWindow.apply`, its data range and SSIM preset); volumes reduced by ``reduction``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    x, y = window.apply(pred), window.apply(ref)
    quality = ssim(x, y, window.data_range, preset=window.ssim_preset)
    if x.ndim == 5 and reduction == "slice":
        slices = x.shape[2]
        per_slice = psnr(x.transpose(1, 2).flatten(0, 1), y.transpose(1, 2).flatten(0, 1), window.data_range)
        return per_slice.view(-1, slices).mean(1), quality
    return psnr(x, y, window.data_range), quality


def scores_in_windows(pred: np.ndarray, ref: np.ndarray, presets: tuple[str, ...], reduction: str = "slice"
                      ) -> dict[str, float]:
    """``{psnr_<preset>, ssim_<preset>}`` of one HU image ``[H, W]`` or volume ``[Z, H, W]``
    (:func:`windowed_scores`) per preset name."""
    x, y = torch.from_numpy(np.asarray(pred))[None, None], torch.from_numpy(np.asarray(ref))[None, None]
    out = {}
    for name in presets:
        p, s = windowed_scores(x, y, CT_PRESETS[name], reduction)
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
