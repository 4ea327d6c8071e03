"""T2Net-style joint reconstruction and super-resolution (Feng, Yan, Fu, Xu, Shao, "Task Transformer Network for
Joint MRI Reconstruction and Super-Resolution", MICCAI 2021).

Two branches read the zero-filled LR input: a reconstruction branch (output on the LR grid) and an SR branch
(output on the HR grid). After each of ``n_groups`` stages a task-transformer module moves reconstruction
features into the SR branch, after TTSR's texture transformer (Yang et al., CVPR 2020): query ``Q = conv(F_sr)``,
key ``K = conv(F_rec)``, value ``V = F_rec``; 3 x 3 patches of Q and K are unfolded and normalised, the relevance
of query patch i and key patch j is ``r_ij = <q_i, k_j>``; hard attention takes, for each i, the value patch of
``argmax_j r_ij`` (folded back, overlaps averaged), soft attention weights it by ``max_j r_ij``:
``F_sr <- F_sr + conv([F_sr, T]) * S``. Loss (``task: joint``): 0.8 L1(SR) + 0.2 L1(reconstruction).

What changed from the paper's code: (1) the relevance matrix is never built whole. T2Net forms the dense
``(h w) x (h w)`` matrix (128^2 LR pixels: 2.7e8 entries, ~1 GB in float32 per image per module); here queries
are processed in chunks of ``chunk`` rows (memory ``chunk x h w``), and only the row maximum and its index are
kept, which is all the hard/soft attention uses, so the result is the dense one exactly (a test checks it);
optionally (``window``) a query searches only its own ``window x window`` tile of the LR grid, which is not
T2Net's global search but costs ``h w window^2`` instead of ``(h w)^2`` (CPU-sized benchmarks use it);
(2) both outputs are residuals whose last layers start at zero: the reconstruction adds to the zero-filled input
and the SR output to the k-space zero-filling of the reconstruction, so training starts from the zero-filling
floor; (3) widths and depths
are arguments (defaults CPU-sized); the reconstruction may end with a data-consistency layer (``dc``: none, as
T2Net, or hard/soft, :mod:`medsr.models.dc`); (4) the SR upsampler is a pixel shuffle at the fixed ``scale``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medsr.kspace import zero_fill_upsample
from medsr.models.base import ModelOutput
from medsr.models.blocks import ResBlock, conv
from medsr.models.dc import DataConsistency
from medsr.models.undersampled import JointSRModel, measurements
from medsr.models.sakg import zero_init
from medsr.registry import MODELS


class TaskTransformer(nn.Module):
    """Transfers reconstruction features into the SR branch (module docstring); ``chunk`` query patches at a time;
    ``window`` (pixels, or None: the whole image) restricts each query's search to its own ``window x window``
    tile of the image."""

    def __init__(self, n_feats: int, chunk: int = 4096, window: int | None = None):
        super().__init__()
        self.query, self.key = conv(n_feats, n_feats), conv(n_feats, n_feats)
        self.fuse = conv(2 * n_feats, n_feats)
        self.chunk, self.window = chunk, window

    def forward(self, sr: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        B, _, h, w = sr.shape
        q = F.normalize(F.unfold(self.query(sr), 3, padding=1), dim=1)
        k = F.normalize(F.unfold(self.key(rec), 3, padding=1), dim=1)
        values = F.unfold(rec, 3, padding=1)
        if self.window is None:
            soft, hard = relevance_max(q, k, self.chunk)
            picked = values.gather(2, hard[:, None].expand(-1, values.shape[1], -1))
        else:
            tiles = [to_tiles(t, (h, w), self.window) for t in (q, k, values)]
            soft, hard = relevance_max(tiles[0], tiles[1], self.chunk)
            picked = tiles[2].gather(2, hard[:, None].expand(-1, values.shape[1], -1))
            soft, picked = from_tiles(soft[:, None], B, (h, w), self.window)[:, 0], from_tiles(picked, B, (h, w),
                                                                                               self.window)
        overlap = F.fold(torch.ones_like(picked[:1]), (h, w), 3, padding=1)
        transferred = F.fold(picked, (h, w), 3, padding=1) / overlap
        return sr + self.fuse(torch.cat([sr, transferred], dim=1)) * soft.view(-1, 1, h, w)


class Branch(nn.Module):
    """``n_groups`` groups of ``n_blocks`` residual blocks after a head convolution."""

    def __init__(self, n_feats: int, n_groups: int, n_blocks: int):
        super().__init__()
        self.head = conv(1, n_feats)
        self.groups = nn.ModuleList(nn.Sequential(*[ResBlock(n_feats) for _ in range(n_blocks)])
                                    for _ in range(n_groups))


@MODELS.register("t2net")
class T2Net(JointSRModel):
    """T2Net-style two-branch network at the integer ``scale``: ``n_feats`` channels, ``n_groups`` stages of
    ``n_blocks`` residual blocks per branch with a task transformer after each; ``dc``: none | hard | soft at the
    end of the reconstruction branch; ``chunk``: query rows per relevance block (memory only); ``window``: search
    each query's ``window x window`` tile only (None: the whole image, as T2Net)."""

    def __init__(self, scale: int = 2, n_feats: int = 32, n_groups: int = 2, n_blocks: int = 2, dc: str = "none",
                 chunk: int = 4096, window: int | None = None):
        super().__init__()
        if int(scale) != scale or scale < 1 or n_groups < 1 or chunk < 1:
            raise ValueError(f"t2net needs an integer scale >= 1, n_groups >= 1, chunk >= 1; got {scale}, "
                             f"{n_groups}, {chunk}")
        if window is not None and not (isinstance(window, int) and window >= 1):
            raise ValueError(f"t2net: window must be a tile side >= 1 pixel or null (the whole image), got {window}")
        self.fixed_scales = (int(scale),)
        self.rec, self.sr = Branch(n_feats, n_groups, n_blocks), Branch(n_feats, n_groups, n_blocks)
        self.transfer = nn.ModuleList(TaskTransformer(n_feats, chunk, window) for _ in range(n_groups))
        self.rec_tail = zero_init(conv(n_feats, 1))
        self.sr_tail = nn.Sequential(conv(n_feats, n_feats * scale * scale), nn.PixelShuffle(int(scale)),
                                     zero_init(conv(n_feats, 1)))
        self.dc = None if dc == "none" else DataConsistency(dc)

    def joint(self, lr: torch.Tensor, out_size: tuple[int, int], ref: torch.Tensor | None,
              mask: torch.Tensor | None, kspace: torch.Tensor | None) -> ModelOutput:
        x = self.centre_slice(lr)
        f_rec, f_sr = self.rec.head(x), self.sr.head(x)
        for rec_group, sr_group, transfer in zip(self.rec.groups, self.sr.groups, self.transfer):
            f_rec = rec_group(f_rec)
            f_sr = transfer(sr_group(f_sr), f_rec)
        recon = x + self.rec_tail(f_rec)
        if self.dc is not None:
            recon = self.dc(recon.float().to(torch.complex64), measurements(x, mask, kspace)).abs().to(x.dtype)
        base = zero_fill_upsample(recon.float(), out_size, magnitude=False).real.to(x.dtype)
        return ModelOutput(base + self.sr_tail(f_sr), {"recon": recon})


def to_tiles(x: torch.Tensor, size: tuple[int, int], window: int) -> torch.Tensor:
    """``[B, D, h w]`` (pixels in row-major order) -> ``[B n_tiles, D, window^2]``: the pixels of each
    ``window x window`` tile; ``ValueError`` unless ``window`` divides ``h`` and ``w``."""
    (h, w), B, D = size, x.shape[0], x.shape[1]
    if h % window or w % window:
        raise ValueError(f"t2net: window {window} does not divide the {h}x{w} LR grid")
    x = x.view(B, D, h // window, window, w // window, window).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, D, window * window)


def from_tiles(x: torch.Tensor, batch: int, size: tuple[int, int], window: int) -> torch.Tensor:
    """The inverse of :func:`to_tiles`."""
    (h, w), D = size, x.shape[1]
    x = x.view(batch, h // window, w // window, D, window, window).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(batch, D, h * w)


def relevance_max(q: torch.Tensor, k: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row maximum and its index of the relevance ``q^T k`` (``q [B, D, Nq]``, ``k [B, D, Nk]``) without forming
    more than ``chunk`` rows at a time: ``(values [B, Nq], indices [B, Nq])``, equal to the dense computation."""
    values, indices = [], []
    for start in range(0, q.shape[-1], chunk):
        block = torch.bmm(q[..., start : start + chunk].transpose(1, 2), k)
        best = block.max(dim=-1)
        values.append(best.values)
        indices.append(best.indices)
    return torch.cat(values, dim=1), torch.cat(indices, dim=1)
