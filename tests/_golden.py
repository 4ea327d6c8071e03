"""Comparing float results with golden files written on another machine.

FFTs and BLAS kernels are not bit-identical across CPUs or thread counts: the same float32 computation differs by a
few units in the last place (ulp) from one machine to the next (221 of 320 values by up to 6e-7 = 5 ulp of 1.0 on
one AVX2 machine). A radix-2 FFT of length n has a round-off error bounded by about ``log2(n) * eps * max|x|``
(Higham, "Accuracy and Stability of Numerical Algorithms", 2002, section 24.1) per pass, and a degradation runs two
2-D transforms on grids of at most 32 points, so 2 * 2 * 5 = 20 eps of the largest value bounds the difference
between two correct machines; :data:`ULPS` = 64 leaves a factor of three above that. A real change of the result
(one k-space column more or less, another mask, another crop) moves values by 1e-3 or more, a thousand times the
tolerance, and :func:`test_golden_tolerance_catches_a_real_change` checks that.
"""

from __future__ import annotations

import numpy as np

ULPS = 64


def tolerance(golden: np.ndarray) -> float:
    """Absolute tolerance for a result compared with ``golden``: :data:`ULPS` float eps of its largest value."""
    return ULPS * float(np.finfo(golden.dtype).eps) * float(np.abs(golden).max())


def matches(new: np.ndarray, golden: np.ndarray) -> bool:
    """Same shape and dtype, and every value within :func:`tolerance`."""
    return new.shape == golden.shape and new.dtype == golden.dtype and \
        bool(np.abs(new.astype(np.complex128) - golden).max() <= tolerance(golden))
