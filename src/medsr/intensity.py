"""The intensity rule of a weights file: how an input volume is mapped to the network's range and the network's
output mapped back. Training writes the rule of its task into the weights' ``meta.norm``
(:meth:`PercentileRule.meta` / :meth:`HURule.meta`); every inference path reads it back with
:func:`rule_from_meta`, so the two never disagree.

* :class:`PercentileRule` (MR: super-resolution, segmentation, accelerated MRI): shift a volume with negative
  values to start at 0, divide by the ``percentile`` of its non-zero voxels (the store's normalisation,
  :func:`medsr.data.store.robust_scale`); restore multiplies and shifts back.
* :class:`HURule` (CT denoising): the fixed ``1 + HU / 1000`` of :func:`medsr.ct.units.network_input`, padding
  below -1024 HU clamped to air; restore maps back to HU and gives the padding its input value again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from medsr.ct.units import AIR_HU, network_input, network_output
from medsr.data.store import NORM_PERCENTILE, robust_scale

Restore = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PercentileRule:
    """``(x - low) / s``: ``low = min(min(x), 0)``, ``s`` the ``percentile`` of the shifted volume's non-zero
    voxels."""

    percentile: float = NORM_PERCENTILE

    def meta(self) -> dict[str, Any]:
        return {"method": "percentile", "percentile": self.percentile}

    def normalise(self, volume: np.ndarray) -> tuple[np.ndarray, Restore]:
        """The normalised volume and the function that maps the network's output back to the input's units."""
        low = min(float(volume.min()), 0.0)
        scale = robust_scale(volume - low, self.percentile)
        return (volume - low) / scale, lambda out: out * scale + low


@dataclass(frozen=True)
class HURule:
    """``1 + HU / 1000`` with padding below :data:`~medsr.ct.units.AIR_HU` clamped to air."""

    def meta(self) -> dict[str, Any]:
        return {"method": "hu", "formula": "1 + HU / 1000", "clamp_below_hu": AIR_HU}

    def normalise(self, hu: np.ndarray) -> tuple[np.ndarray, Restore]:
        hu_t = torch.as_tensor(np.ascontiguousarray(hu, dtype=np.float32))
        return network_input(hu_t).numpy(), lambda out: network_output(torch.as_tensor(out), hu_t).numpy()


def rule_from_meta(meta: Mapping[str, Any]) -> PercentileRule | HURule:
    """The rule a weights file's ``meta.norm`` records (absent: the percentile rule at its default); a record
    that is not a rule is a :class:`ValueError`."""
    norm = meta.get("norm")
    if norm is None:
        return PercentileRule()
    if not isinstance(norm, Mapping):
        raise ValueError(f"meta.norm must be a mapping, got {norm!r}")
    method = norm.get("method", "percentile")
    if method == "hu":
        return HURule()
    percentile = norm.get("percentile", NORM_PERCENTILE)
    if method != "percentile" or isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
            or not 0 < percentile <= 100:
        raise ValueError(f"meta.norm must be a percentile rule with a percentile in (0, 100] or the HU rule, "
                         f"got {dict(norm)!r}")
    return PercentileRule(float(percentile))
