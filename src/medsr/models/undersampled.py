"""Models for undersampled low-resolution inputs: the interface of joint reconstruction + super-resolution.

A :class:`JointSRModel` is an :class:`~medsr.models.base.SRModel` (``uses_kspace``) whose ``forward`` also takes the
measurement of the input's centre slice: ``mask`` (``[B, w]`` columns or ``[B, h, w]``, centred, on the LR grid)
and ``kspace`` (``[B, h, w]`` complex, the measured samples, zero elsewhere). :meth:`JointSRModel.joint` returns a
:class:`~medsr.models.base.ModelOutput` with the HR image and ``aux["recon"]``, the reconstruction on the LR grid
(what ``task: joint`` scores against the clean LR); ``forward`` returns it in training mode and the image otherwise.

Without ``mask`` or without ``kspace`` the data-consistency layers do nothing (:func:`measurements`): the
measurement is never derived from a magnitude image, and ``medsr sr`` refuses weights with such layers
(:func:`medsr.models.dc.has_data_consistency`).
"""

from __future__ import annotations

import abc
from typing import Sequence

import torch

from medsr.models.base import ModelOutput, Output, SRModel


def measurements(centre: torch.Tensor, mask: torch.Tensor | None, kspace: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(measured k-space [B, 1, h, w], mask [B, 1, 1 | h, w] bool)`` of the centre slice ``[B, 1, h, w]``, or
    None without a mask or without measured ``kspace`` (see the module docstring). Measurements are never derived
    from the magnitude ``centre``: a magnitude image has lost the phase, so its spectrum is not what was measured
    and data consistency with it would be wrong."""
    if mask is None or kspace is None:
        return None
    B, _, h, w = centre.shape
    m = mask.to(torch.bool).reshape(B, 1, -1 if mask.dim() == 3 else 1, w)
    k = kspace.reshape(B, 1, h, w)
    return torch.where(m, k, torch.zeros((), dtype=k.dtype, device=k.device)), m


class JointSRModel(SRModel, abc.ABC):
    """Base of the joint models (module docstring); subclasses implement :meth:`joint`."""

    uses_kspace = True
    aux_outputs: tuple[str, ...] = ("recon",)

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, kspace: torch.Tensor | None = None) -> Output:
        self.check_scale(lr, out_size)
        self.check_ref(lr, ref)
        out = self.joint(lr, (int(out_size[0]), int(out_size[1])), ref, mask, kspace)
        return out if self.training else out.image

    @abc.abstractmethod
    def joint(self, lr: torch.Tensor, out_size: tuple[int, int], ref: torch.Tensor | None,
              mask: torch.Tensor | None, kspace: torch.Tensor | None) -> ModelOutput:
        """The HR image ``[B, 1, H, W]`` and ``aux["recon"]`` ``[B, 1, h, w]``."""
