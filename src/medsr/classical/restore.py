"""The classical CT denoisers of ``medsr denoise --method``: non-local means (:mod:`medsr.ct.nlm`, patch 7, search
21, ``h`` proportional to the noise level) and the BM3D-style filter (:mod:`medsr.classical.bm3d`), slice by slice
in HU. The noise PSD is given (e.g. the simulator's, from :func:`medsr.classical.noise.psd_of_noise`) or estimated
from the flat soft tissue of all slices together (:func:`medsr.classical.noise.estimate_noise`, one noise for the
volume). ``NLM_H_PER_SIGMA`` is the ``h / noise std`` that gave the best RED-CNN-window PSNR on the validation slice
of ``benchmarks/classical_ct.py`` (the embedded abdomen at a quarter dose; factors 0.8 to 2.0 tried, 1.0 best at
30.80 dB, 1.2 at 30.64 dB)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from medsr.classical.bm3d import Bm3dParams, bm3d
from medsr.classical.noise import estimate_noise, tissue_mask
from medsr.ct.nlm import nl_means

METHODS = ("nlm", "bm3d")
NLM_PATCH, NLM_SEARCH = 7, 21
NLM_H_PER_SIGMA = 1.0


def volume_psd(hu: torch.Tensor, psd: torch.Tensor | None = None) -> tuple[torch.Tensor, str]:
    """The noise PSD of CT slices ``[N, H, W]`` in HU: ``psd`` when given, else estimated; with a description."""
    if psd is not None:
        return psd, f"noise {math.sqrt(float(psd.mean())):.1f} HU std (given PSD)"
    estimate = estimate_noise(hu, valid=tissue_mask(hu))
    return estimate.psd, (f"noise {estimate.std:.1f} HU std (PSD estimated from {estimate.patches} flat of "
                          f"{estimate.candidates} soft-tissue patches)")


def slice_denoiser(method: str, psd: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The function denoising one slice ``[H, W]`` in HU by ``method`` (:data:`METHODS`) under noise ``psd``,
    and its parameters in words."""
    if method == "nlm":
        h = NLM_H_PER_SIGMA * math.sqrt(float(psd.mean()))
        return (lambda x: nl_means(x, h, NLM_PATCH, NLM_SEARCH),
                f"nlm: patch {NLM_PATCH}, search {NLM_SEARCH}, h {h:.1f} HU ({NLM_H_PER_SIGMA:g} x noise std)")
    if method == "bm3d":
        p = Bm3dParams()
        return (lambda x: bm3d(x, psd, p),
                f"bm3d: block {p.block}, step {p.step}, search {p.search}, groups {p.group_ht}/{p.group_wiener}, "
                f"lambda {p.lambda_ht:g}, shifts under {p.exclude} px excluded, variance x {p.variance_factor:g}, "
                f"Kaiser beta {p.kaiser_beta:g}")
    raise ValueError(f"unknown classical method {method!r}; one of {', '.join(METHODS)}")
