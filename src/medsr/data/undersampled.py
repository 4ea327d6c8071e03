"""Items for accelerated MRI (``task: reconstruction`` and ``task: joint``): the undersampled LR input, the clean
LR it came from and the HR target, on one intensity scale.

:class:`JointSliceDataset` is :class:`~medsr.data.datasets.SRSliceDataset` with a mandatory undersampling mask
(``data.mask``; on the LR grid by default: crop k-space, then mask, T2Net's order), whose items therefore also hold
``lr_clean [1, h, w]`` (the fully sampled LR centre slice), ``kspace [h, w]`` complex64 (its measured samples,
zero elsewhere, centred) and ``mask``. All FFTs are orthonormal and the crop keeps the mean intensity, so
``lr``, ``lr_clean`` and ``hr`` share one scale: a perfect reconstruction equals ``lr_clean`` and zero-filling
``lr_clean`` to the HR grid equals ``hr`` inside the band.

``fov`` (rows, columns) centre-crops or zero-pads every HR slice first (T2Net's IXI slices are 256 x 256; the
presets of ``data.mask.type: t2net`` exist for 128 and 64 LR columns).

``intensity="t2net-compat"`` reproduces the normalisation of T2Net's data pipeline (Feng et al., "Task
Transformer Network for Joint MRI Reconstruction and Super-Resolution", MICCAI 2021, as its public loader
reads), and only when asked for: the HR target is the absolute value of the z-scored slice, ``|x - mean| / std``
(per slice), and the LR images come from an unnormalised FFT crop (forward FFT on the HR grid, inverse on the
LR grid, both without scaling), which makes them ``H W / (h w)`` times brighter than the HR (4 at x2, 16 at x4).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from medsr.config import CHOICES
from medsr.data.datasets import SampleSpec, SRSliceDataset
from medsr.errors import InputError
from medsr.kspace import crop_kspace, pad_kspace

INTENSITIES = CHOICES["data.intensity"]
LR_KEYS = ("lr", "lr_clean", "kspace")


class JointSliceDataset(SRSliceDataset):
    """:class:`SRSliceDataset` items with ``lr_clean`` and ``kspace`` (module docstring); ``fov`` and
    ``intensity`` as described there. The other arguments are :class:`SRSliceDataset`'s; ``mask`` is required."""

    def __init__(self, *args: Any, fov: Sequence[int] | None = None, intensity: str = "orthonormal", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.mask is None:
            raise InputError("data.mask", "reconstruction and joint tasks need an undersampling mask (data.mask.type)")
        if intensity not in INTENSITIES:
            raise InputError("data.intensity", f"must be one of {', '.join(INTENSITIES)}, got {intensity!r}")
        if fov is not None and (len(fov) != 2 or min(fov) < 1):
            raise InputError("data.fov", f"expected [rows, columns] of positive sizes, got {list(fov)}")
        self.fov = None if fov is None else (int(fov[0]), int(fov[1]))
        self.intensity = intensity

    def _read(self, sid: str, z: int, spec: SampleSpec) -> dict[str, np.ndarray]:
        arrays = super()._read(sid, z, spec)
        if self.fov is not None:
            arrays = {name: fit_fov(a, self.fov) for name, a in arrays.items()}
        if self.intensity == "t2net-compat":
            arrays["stack"] = t2net_target(arrays["stack"])
        return arrays

    def __getitem__(self, spec: SampleSpec) -> dict[str, Any]:
        item = super().__getitem__(spec)
        if self.intensity == "t2net-compat":
            gain = t2net_lr_gain(tuple(item["hr"].shape[-2:]), tuple(item["lr"].shape[-2:]))
            item.update({key: item[key] * gain for key in LR_KEYS})
        return item


def fit_fov(array: np.ndarray, fov: tuple[int, int]) -> np.ndarray:
    """Centre-crop and/or zero-pad the last two axes of ``array`` to ``fov`` (centre index ``N // 2`` kept on
    ``n // 2``, as for spectra)."""
    kept = (min(array.shape[-2], fov[0]), min(array.shape[-1], fov[1]))
    return pad_kspace(crop_kspace(array, kept), fov)


def t2net_target(stack: np.ndarray) -> np.ndarray:
    """T2Net's HR target: ``|x - mean| / std`` of each slice of ``stack [..., H, W]`` (a flat slice stays 0)."""
    mean = stack.mean(axis=(-2, -1), keepdims=True)
    std = stack.std(axis=(-2, -1), keepdims=True)
    return (np.abs(stack - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def t2net_lr_gain(hr: tuple[int, int], lr: tuple[int, int]) -> float:
    """Brightness of an unnormalised FFT crop from ``hr`` to ``lr`` relative to the mean-preserving one."""
    return hr[0] * hr[1] / (lr[0] * lr[1])


def protocol(intensity: str, fov: Sequence[int] | None) -> dict[str, str]:
    """Protocol-header lines of the data: intensity scale and field of view."""
    scale = ("t2net-compat: HR = |z-scored slice|, LR from an unnormalised FFT crop (H W / (h w) times brighter "
             "than the HR); NOT medsr's scale" if intensity == "t2net-compat" else
             "orthonormal FFTs: input, clean LR and HR on one scale (volume / 99.5th percentile)")
    return {"intensity": scale,
            "field_of_view": "as stored" if fov is None else f"HR slices centre-cropped/zero-padded to "
                                                              f"{fov[0]}x{fov[1]}"}
