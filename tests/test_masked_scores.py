"""Brain-masked PSNR/SSIM of the evaluation protocol against numpy / scikit-image on the masked pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from medsr.evaluation.scores import brain_mask, masked_score


def ring_volume() -> torch.Tensor:
    """Two slices of a bright ring with a dark (but non-zero) inside and a zero background."""
    y, x = np.mgrid[:40, :40]
    r = np.hypot(y - 20, x - 19)
    slice_ = np.where(r < 14, 0.02, 0.0) + np.where((r >= 10) & (r < 14), 1.0, 0.0)
    return torch.from_numpy(np.stack([slice_, 0.8 * slice_]))


def test_brain_mask_thresholds_and_fills_holes() -> None:
    hr = ring_volume()
    mask = brain_mask(hr)
    y, x = np.mgrid[:40, :40]
    inside = np.hypot(y - 20, x - 19) < 14
    assert mask.dtype == torch.bool and torch.equal(mask[0], torch.from_numpy(inside))  # the dark centre is filled
    assert not brain_mask(hr, fraction=2.0).any()


def test_masked_scores_match_numpy_and_skimage() -> None:
    hr = ring_volume()
    sr = hr + 0.05 * torch.from_numpy(np.random.default_rng(0).standard_normal(hr.shape))
    mask = brain_mask(hr)
    psnr, ssim = masked_score(sr, hr, mask)
    a, b, m = sr.numpy(), hr.numpy(), mask.numpy()
    peak = b.max() - b.min()
    assert psnr == pytest.approx(10 * np.log10(peak**2 / np.mean((a[m] - b[m]) ** 2)), rel=1e-9)
    values = []
    pad = 5
    for z in range(2):
        _, smap = structural_similarity(b[z], a[z], data_range=peak, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
        values.append((smap[pad:-pad, pad:-pad], m[z, pad:-pad, pad:-pad]))
    expected = np.mean([v[k].mean() for v, k in values])
    assert ssim == pytest.approx(expected, rel=1e-6)
