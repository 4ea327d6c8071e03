"""Dual-ArbNet-style multi-contrast arbitrary-scale SR, written from the description in Zhang et al., "Dual
Arbitrary Scale Super-Resolution for Multi-Contrast MRI", MICCAI 2023.

* RDN encoders for the target (centre LR slice) and the reference, each on its own grid, so the two resolutions
  are decoupled: the reference may come at any size, or not at all.
* For every output pixel the nearest 3x3-unfolded code of each feature map is taken (each on its own grid) with
  its relative coordinate and its per-axis cell (the scale of that input relative to the output).
* Implicit fusion decoder: a fusion branch (pointwise layers over both codes) produces, per layer, one modulation
  for each of two sine-activated coordinate branches (target: relative coordinate and both cells; reference:
  its own relative coordinate and both cells); the two branches are read out together, plus a skip from the
  target code.
* Without a reference the reference code, coordinate and cell are zeros.
The bicubic upsampled centre slice is added as a global residual (``head="bicubic"``), or the k-space head of
:mod:`medsr.models.base` is used.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from medsr.models.base import SRModel
from medsr.models.blocks import MLP, Query, SineLayer, build_encoder, decode_grid, local_samples, unfold3x3
from medsr.registry import MODELS

PAPER_ENCODER = {"type": "rdn", "n_feats": 64, "n_blocks": 5, "growth": 64, "n_layers": 10}


class ImplicitFusionDecoder(nn.Module):
    """Fusion branch modulating two sine-activated coordinate branches, layer by layer."""

    def __init__(self, code_dim: int, hidden: Sequence[int], w0: float):
        super().__init__()
        self.fusion = nn.ModuleList()
        self.target_coord = nn.ModuleList()
        self.ref_coord = nn.ModuleList()
        fuse_in, coord_in = 2 * code_dim, 6
        for i, h in enumerate(hidden):
            self.fusion.append(MLP(fuse_in, 2 * h, (2 * h,)))
            self.target_coord.append(SineLayer(coord_in, h, w0=w0, is_first=i == 0))
            self.ref_coord.append(SineLayer(coord_in, h, w0=w0, is_first=i == 0))
            fuse_in, coord_in = 2 * h, h
        self.readout = nn.Linear(2 * hidden[-1], 1)
        self.skip = MLP(code_dim, 1, (hidden[-1],))

    def forward(
        self, target: torch.Tensor, ref: torch.Tensor, target_coord: torch.Tensor, ref_coord: torch.Tensor
    ) -> torch.Tensor:
        k, qt, qr = torch.cat([target, ref], dim=-1), target_coord, ref_coord
        for fuse, sine_t, sine_r in zip(self.fusion, self.target_coord, self.ref_coord):
            k = fuse(k)
            kt, kr = k.chunk(2, dim=-1)
            qt, qr = kt * sine_t(qt), kr * sine_r(qr)
        return self.readout(torch.cat([qt, qr], dim=-1)) + self.skip(target)


@MODELS.register("dualarb")
class DualArbNet(SRModel):
    """Defaults follow the paper's code sizes: RDN encoders with 5 blocks of 10 layers (growth 64, 64 features),
    five 64-wide decoder layers. ``w0`` is the sine layers' frequency (SIREN); ``chunk`` bounds decoder rows.
    ``head``: ``"bicubic"`` (as published: bicubic centre slice + decoder output) or ``"kspace"`` (zero-filling +
    band-split residual + zero-initialised in-band correction, the decoder's last layer zero-initialised;
    ``in_band_correction`` switches the correction); ``nonnegative``: clamp evaluation outputs at 0
    (``models.base``). Under the k-space head the readout and the skip's last layer start at zero."""

    uses_ref = True

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        hidden: Sequence[int] = (64, 64, 64, 64, 64),
        w0: float = 30.0,
        head: str = "bicubic",
        in_band_correction: bool | str = True,
        nonnegative: bool = True,
        chunk: int = 1 << 16,
    ):
        super().__init__()
        spec = encoder or PAPER_ENCODER
        self.target_encoder = build_encoder(spec)
        self.ref_encoder = build_encoder(spec)
        self.decoder = ImplicitFusionDecoder(9 * self.target_encoder.out_channels, hidden, w0)
        C = self.target_encoder.out_channels
        self.init_head(head, C, in_band_correction=in_band_correction, nonnegative=nonnegative)
        self.starts_at_zero(self.decoder.readout)
        self.starts_at_zero(self.decoder.skip.net[-1])
        self.chunk = chunk

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> torch.Tensor:
        self.check_scale(lr, out_size)
        self.check_ref(lr, ref)
        x = self.centre_slice(lr)
        feat = self.target_encoder(x)
        target_size = x.new_tensor(feat.shape[-2:])
        ref_feat = None if ref is None else unfold3x3(self.ref_encoder(ref))
        ref_size = None if ref_feat is None else x.new_tensor(ref_feat.shape[-2:])

        def decode(q: Query) -> torch.Tensor:
            target_cell = q.cell
            if ref_feat is None:
                codes = torch.zeros_like(q.feat)
                rel = ref_cell = torch.zeros_like(q.rel)
            else:
                codes, rel, _ = local_samples(ref_feat, q.coord, ensemble=False)
                codes, rel = codes[:, 0], rel[:, 0]
                ref_cell = target_cell / target_size * ref_size
            target_coord = torch.cat([q.rel, target_cell, ref_cell], -1)
            return self.decoder(q.feat, codes, target_coord, torch.cat([rel, ref_cell, target_cell], -1))

        out = decode_grid(feat, out_size, decode, feat_unfold=True, ensemble=False, chunk=self.chunk)
        return self.upsample_output(lr, out, feat)
