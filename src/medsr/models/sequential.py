"""Reconstruction-then-super-resolution pipelines for undersampled LR inputs, composed from MODELS specs.

``sequential`` (the baselines of the joint literature, e.g. T2Net's and MTrans' "Rec -> SR" rows): the input is the
zero-filled image (magnitude of the inverse FFT of the measured samples); a reconstruction network with data
consistency (any ``uses_kspace`` scale-1 spec, e.g. ``dc_cascade``; ``recon: null`` skips it: zero-filling ->
SR) restores the LR centre slice; any super-resolution spec from MODELS takes the stack with its centre replaced
by the reconstruction. With ``detach`` (the default) the SR loss does not reach the reconstruction stage, so one
run trains the two stages as separately trained pipelines would be: the reconstruction on its own loss, the SR on
the reconstruction's outputs.

``sakg_joint``: the flagship on undersampled inputs. The same composition, trained end to end (no detach): a
small DC cascade on the LR grid feeds SAKG (``models/sakg.py``, unchanged), with or without a reference contrast,
so the SR loss also shapes the reconstruction.
"""

from __future__ import annotations

from typing import Any

import torch

from medsr.models.base import ModelOutput, as_image, sr_model
from medsr.models.undersampled import JointSRModel
from medsr.registry import MODELS

DEFAULT_RECON = {"type": "dc_cascade", "n_cascades": 3, "n_feats": 32, "n_layers": 4, "dc": "hard"}
SMALL_SAKG = {"encoder": {"type": "rdn", "n_feats": 32, "n_blocks": 3, "growth": 16, "n_layers": 3},
              "ref_encoder": {"type": "edsr", "n_feats": 16, "n_blocks": 2}, "sem_width": 16, "n_fuse": 1,
              "hidden": 64}


@MODELS.register("sequential")
class Sequential(JointSRModel):
    """``sr`` (a MODELS spec of any super-resolution model) after ``recon`` (a MODELS spec of a reconstruction
    model that ``uses_kspace`` at scale 1, or None: the zero-filled input); ``detach`` as in the module docstring.
    Capabilities (scales, reference, depth) are the SR model's."""

    def __init__(self, sr: dict[str, Any], recon: dict[str, Any] | None = None, detach: bool = True):
        super().__init__()
        self.sr = sr_model(MODELS.build(sr), "model.sr")
        self.recon = None if recon is None else sr_model(MODELS.build(recon), "model.recon")
        if self.recon is not None and not (self.recon.uses_kspace and self.recon.fixed_scales == (1,)):
            raise ValueError(f"model.recon: {type(self.recon).__name__} is not a reconstruction model (it must take "
                             "the k-space and keep the grid)")
        self.detach = detach
        self.fixed_scales, self.uses_ref, self.n_slices = self.sr.fixed_scales, self.sr.uses_ref, self.sr.n_slices
        self.aux_outputs = ("recon", *self.sr.aux_outputs)

    def joint(self, lr: torch.Tensor, out_size: tuple[int, int], ref: torch.Tensor | None,
              mask: torch.Tensor | None, kspace: torch.Tensor | None) -> ModelOutput:
        c = lr.shape[1] // 2
        recon = lr[:, c : c + 1]
        if self.recon is not None:
            recon = self.recon(lr, lr.shape[-2:], None, mask=mask, kspace=kspace)
        stage = recon.detach() if self.detach else recon
        out = self.sr(torch.cat([lr[:, :c], stage, lr[:, c + 1 :]], dim=1), out_size, ref if self.uses_ref else None)
        aux = out.aux if isinstance(out, ModelOutput) else {}
        return ModelOutput(as_image(out), {**aux, "recon": recon})


@MODELS.register("sakg_joint")
def sakg_joint(sakg: dict[str, Any] | None = None, recon: dict[str, Any] | None = None) -> Sequential:
    """SAKG (``sakg``: its arguments, default a CPU-sized one) after a DC cascade (``recon``: a MODELS spec,
    default :data:`DEFAULT_RECON`), trained end to end (module docstring)."""
    return Sequential({"type": "sakg", **(SMALL_SAKG if sakg is None else sakg)},
                      DEFAULT_RECON if recon is None else recon, detach=False)
