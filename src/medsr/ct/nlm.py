"""Non-local means (Buades, Coll & Morel, "A non-local algorithm for image denoising", CVPR 2005), the classical
baseline of the CT benchmark, in plain torch (scikit-image is a test-only dependency here).

Each pixel becomes the weighted mean of the pixels ``q`` in a ``search x search`` window around it, weighted by
the similarity of the ``patch x patch`` neighbourhoods: ``w = exp(-max(d^2 - 2 sigma^2, 0) / h^2)`` with ``d^2``
the mean squared difference of the two patches (uniform patch weights, as scikit-image's ``fast_mode``) and
``sigma`` the noise level (0: none subtracted). Images are reflect-padded, so every pixel sees a full window; the
patch mean is taken as two 1-D means (separable).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nl_means(image: torch.Tensor, h: float, patch: int = 5, search: int = 11, sigma: float = 0.0) -> torch.Tensor:
    """Denoise ``[..., H, W]`` images (any units; ``h`` and ``sigma`` in the same units). ``patch`` and ``search``
    are odd sizes."""
    if patch % 2 == 0 or search % 2 == 0 or patch < 1 or search < 1:
        raise ValueError(f"patch and search must be odd positive sizes, got {patch} and {search}")
    if not h > 0:
        raise ValueError(f"h must be positive, got {h}")
    lead, (H, W) = image.shape[:-2], image.shape[-2:]
    x = image.reshape(-1, 1, H, W).to(torch.float64)
    r, p = search // 2, patch // 2
    padded = F.pad(x, (r + p, r + p, r + p, r + p), mode="reflect")
    centre = padded[..., r : r + H + 2 * p, r : r + W + 2 * p]
    total = torch.zeros_like(x)
    weights = torch.zeros_like(x)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            shifted = padded[..., r + dy : r + dy + H + 2 * p, r + dx : r + dx + W + 2 * p]
            d2 = F.avg_pool2d(F.avg_pool2d((centre - shifted) ** 2, (patch, 1), stride=1), (1, patch), stride=1)
            w = torch.exp(-torch.clamp(d2 - 2 * sigma**2, min=0) / (h * h))
            total += w * shifted[..., p : p + H, p : p + W]
            weights += w
    return (total / weights).to(image.dtype).reshape(*lead, H, W)


def nlm_grid() -> list[dict[str, float]]:
    """The parameter grid the CT benchmarks tune on their validation split: ``h`` 8 to 128 HU, patches 3, 5 and 7
    with search window 11 (the grid of the first benchmarks), and patch 7 with search window 21 (the larger search
    of a well-tuned NLM on full-HU input, issue 20); no noise subtraction."""
    return [{"h": h, "patch": patch, "search": search, "sigma": 0.0}
            for h in (8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0)
            for patch, search in ((3, 11), (5, 11), (7, 11), (7, 21))]
