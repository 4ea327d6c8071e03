"""Building blocks shared by the architectures: convolutions, residual and residual-dense blocks, feature
encoders without upsampler, MLPs, sine layers and LIIF's local-ensemble feature query."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.base import make_cell, make_coord
from medsr.registry import MODELS


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> nn.Conv2d:
    """A 'same' convolution (odd ``kernel_size``, zero padding ``kernel_size // 2``)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class ResBlock(nn.Module):
    """EDSR residual block without batch normalisation: ``x + res_scale * conv(relu(conv(x)))``.

    Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPRW 2017.
    """

    def __init__(self, n_feats: int, kernel_size: int = 3, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            conv(n_feats, n_feats, kernel_size), nn.ReLU(inplace=True), conv(n_feats, n_feats, kernel_size)
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


@MODELS.register("encoder/edsr")
class EDSREncoder(nn.Module):
    """EDSR trunk without upsampler: head conv, ``n_blocks`` residual blocks, conv, long skip.

    ``[B, in_channels, h, w] -> [B, n_feats, h, w]``; the defaults (16 blocks, 64 features) are EDSR-baseline,
    the encoder LIIF uses. ``out_channels`` is the feature width.
    """

    def __init__(self, in_channels: int = 1, n_feats: int = 64, n_blocks: int = 16, res_scale: float = 1.0):
        super().__init__()
        self.head = conv(in_channels, n_feats)
        blocks = [ResBlock(n_feats, res_scale=res_scale) for _ in range(n_blocks)]
        self.body = nn.Sequential(*blocks, conv(n_feats, n_feats))
        self.out_channels = n_feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return x + self.body(x)


class RDB(nn.Module):
    """Residual dense block: ``n_layers`` densely connected conv+ReLU layers of ``growth`` channels, 1x1 local
    feature fusion and a local residual. Zhang et al., "Residual Dense Network for Image Super-Resolution",
    CVPR 2018."""

    def __init__(self, n_feats: int, growth: int, n_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(conv(n_feats + i * growth, growth), nn.ReLU(inplace=True)) for i in range(n_layers)
        )
        self.fuse = conv(n_feats + n_layers * growth, n_feats, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, dim=1)))
        return x + self.fuse(torch.cat(feats, dim=1))


@MODELS.register("encoder/rdn")
class RDNEncoder(nn.Module):
    """RDN without its upsampler (Zhang et al. CVPR 2018): shallow features, ``n_blocks`` RDBs, global feature
    fusion (1x1 + 3x3 over all RDB outputs) and global residual learning.

    ``[B, in_channels, h, w] -> [B, n_feats, h, w]``; defaults are the paper's (G0 = 64, D = 16, C = 8, G = 64).
    """

    def __init__(
        self, in_channels: int = 1, n_feats: int = 64, n_blocks: int = 16, growth: int = 64, n_layers: int = 8
    ):
        super().__init__()
        self.sfe1 = conv(in_channels, n_feats)
        self.sfe2 = conv(n_feats, n_feats)
        self.blocks = nn.ModuleList(RDB(n_feats, growth, n_layers) for _ in range(n_blocks))
        self.gff = nn.Sequential(conv(n_blocks * n_feats, n_feats, 1), conv(n_feats, n_feats))
        self.out_channels = n_feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f_minus1 = self.sfe1(x)
        x = self.sfe2(f_minus1)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return f_minus1 + self.gff(torch.cat(outs, dim=1))


def build_encoder(spec: dict | None, default: str = "rdn", in_channels: int = 1) -> nn.Module:
    """Encoder from a JSON-able spec ``{"type": "edsr" | "rdn" | "swinir_light", **args}`` (None: the
    paper-sized ``default``), built as the model ``encoder/<type>``."""
    args = dict(spec or {"type": default})
    name = args.pop("type", default)
    return MODELS.build({"type": f"encoder/{name}", **args}, in_channels=in_channels)


class MLP(nn.Module):
    """Linear layers with ReLU between them: ``in_dim -> hidden... -> out_dim`` on the last axis."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256, 256, 256)):
        super().__init__()
        dims = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SineLayer(nn.Module):
    """``sin(w0 * (W x + b))`` with SIREN's initialisation (Sitzmann et al., "Implicit Neural Representations
    with Periodic Activation Functions", NeurIPS 2020): first layer U(-1/n, 1/n), later U(-sqrt(6/n)/w0, ...)."""

    def __init__(self, in_features: int, out_features: int, w0: float = 30.0, is_first: bool = False):
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(in_features, out_features)
        self.bound = 1.0 / in_features if is_first else math.sqrt(6.0 / in_features) / w0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.linear.reset_parameters()
        nn.init.uniform_(self.linear.weight, -self.bound, self.bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.linear(x))


@dataclass
class Query:
    """What a decoder sees for a batch of ``N`` queries (one latent code each).

    ``feat [B, N, C]``: the latent code; ``rel [B, N, 2]``: query minus code position, ``(y, x)``, in units where
    one feature pixel spans 2 (so within [-1, 1] for the nearest code, [-2, 2] for the ensemble's neighbours);
    ``cell [B, N, 2] | None``: the output pixel's size in the same units; ``coord [B, N, 2]``: the query's
    absolute normalised coordinate (to sample other feature maps at the same place).
    """

    feat: torch.Tensor
    rel: torch.Tensor
    cell: torch.Tensor | None
    coord: torch.Tensor


def unfold3x3(feat: torch.Tensor) -> torch.Tensor:
    """LIIF's feature unfolding: each code becomes the concatenation of its 3x3 neighbourhood ``[B, 9 C, h, w]``."""
    B, C, h, w = feat.shape
    return F.unfold(feat, 3, padding=1).view(B, C * 9, h, w)


def _nearest_index(coord: torch.Tensor, n: int) -> torch.Tensor:
    """Index of the pixel (of ``n``) whose cell contains the normalised coordinate, clamped to the grid."""
    return ((coord + 1) * (n / 2)).floor().long().clamp_(0, n - 1)


def local_samples(
    feat: torch.Tensor, coord: torch.Tensor, ensemble: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Latent codes around each query, vectorised over the ``K`` neighbours (4 with ``ensemble``, else 1).

    ``feat [B, C, h, w]``, ``coord [B, N, 2]`` (y, x). Returns ``codes [B, K, N, C]``, ``rel [B, K, N, 2]``
    (units: one feature pixel = 2) and ``weights [B, K, N]`` summing to 1: for the ensemble, the area of the
    rectangle between the query and the diagonally opposite code, as in LIIF (Chen et al., "Learning Continuous
    Image Representation with Local Implicit Image Function", CVPR 2021); without it, the nearest code, weight 1.
    """
    B, C, h, w = feat.shape
    size = coord.new_tensor([h, w])
    if ensemble:
        eps = 1e-6
        shifts = coord.new_tensor([[-1, -1], [-1, 1], [1, -1], [1, 1]]) / size + eps
        shifted = coord[:, None] + shifts[None, :, None]
    else:
        shifted = coord[:, None]
    iy, ix = _nearest_index(shifted[..., 0], h), _nearest_index(shifted[..., 1], w)
    K, N = shifted.shape[1], coord.shape[1]
    flat = (iy * w + ix).view(B, 1, K * N).expand(B, C, K * N)
    codes = feat.reshape(B, C, h * w).gather(2, flat).view(B, C, K, N).permute(0, 2, 3, 1)
    centre = torch.stack([iy, ix], dim=-1).to(coord.dtype)
    rel = (coord[:, None] - ((2 * centre + 1) / size - 1)) * size
    if not ensemble:
        return codes, rel, coord.new_ones(B, 1, N)
    area = (rel[..., 0] * rel[..., 1]).abs() + 1e-9
    area = area.flip(1)
    return codes, rel, area / area.sum(dim=1, keepdim=True)


def query_features(
    feat: torch.Tensor,
    coord: torch.Tensor,
    decode: Callable[[Query], torch.Tensor],
    cell: torch.Tensor | None = None,
    feat_unfold: bool = False,
    ensemble: bool = True,
    chunk: int = 1 << 16,
) -> torch.Tensor:
    """Decode a continuous image at ``coord [B, N, 2]`` from ``feat [B, C, h, w]`` (LIIF, Chen et al. 2021).

    For each query the nearest latent code (with ``ensemble``: the four codes around it) is passed with the
    relative coordinate and the relative cell to ``decode(Query) -> [B, n, O]``; the ensemble's predictions are
    blended with LIIF's area weights. ``cell [B, N, 2]`` is the per-axis output pixel size in normalised units
    (``base.make_cell``), so asymmetric scales are exact. ``feat_unfold`` concatenates 3x3 neighbourhoods first.
    Queries go through ``decode`` in chunks of about ``chunk`` rows (batch x neighbours x queries) to bound
    memory. Returns ``[B, N, O]``.
    """
    if feat_unfold:
        feat = unfold3x3(feat)
    B, N = coord.shape[:2]
    size = coord.new_tensor(feat.shape[-2:])
    K = 4 if ensemble else 1
    step = max(1, chunk // (B * K))
    outs = []
    for start in range(0, N, step):
        c = coord[:, start : start + step]
        n = c.shape[1]
        codes, rel, weights = local_samples(feat, c, ensemble)
        rel_cell = None if cell is None else (cell[:, start : start + step] * size)[:, None].expand(B, K, n, 2)
        q = Query(
            feat=codes.reshape(B, K * n, -1),
            rel=rel.reshape(B, K * n, 2),
            cell=None if rel_cell is None else rel_cell.reshape(B, K * n, 2),
            coord=c[:, None].expand(B, K, n, 2).reshape(B, K * n, 2),
        )
        pred = decode(q).reshape(B, K, n, -1)
        outs.append((pred * weights[..., None]).sum(dim=1))
    return torch.cat(outs, dim=1)


def decode_grid(
    feat: torch.Tensor,
    out_size: Sequence[int],
    decode: Callable[[Query], torch.Tensor],
    feat_unfold: bool = False,
    ensemble: bool = True,
    chunk: int = 1 << 16,
) -> torch.Tensor:
    """:func:`query_features` at every pixel centre of an ``out_size`` grid (with its per-axis cell), returned as
    an image ``[B, O, H, W]``. Coordinates stay in float32 (float64 for float64 features), also under autocast."""
    B = feat.shape[0]
    H, W = int(out_size[0]), int(out_size[1])
    dtype = torch.float64 if feat.dtype == torch.float64 else torch.float32
    coord = make_coord((H, W), device=feat.device, dtype=dtype).view(1, H * W, 2).expand(B, H * W, 2)
    cell = make_cell((H, W), B, device=feat.device).to(dtype)
    out = query_features(feat, coord, decode, cell, feat_unfold=feat_unfold, ensemble=ensemble, chunk=chunk)
    return out.permute(0, 2, 1).reshape(B, -1, H, W)
