"""SwinIR-light as a feature encoder: Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCV
Workshops 2021, written from the paper (Sec. 3.1, the lightweight setting of Sec. 4).

* Shallow features: one 3x3 convolution.
* Deep features: ``K`` residual Swin Transformer blocks (RSTB), each ``L`` Swin Transformer layers followed by a
  3x3 convolution, with a residual connection; then a LayerNorm, a 3x3 convolution and the long skip from the
  shallow features. Tokens are normalised once after embedding (the patch norm).
* Swin Transformer layer (Liu et al., "Swin Transformer", ICCV 2021): ``x + MSA(LN(x))`` then
  ``x + MLP(LN(x))`` (two linear layers, GELU, hidden ratio ``mlp_ratio``); multi-head self-attention inside
  non-overlapping ``M x M`` windows with a learned relative position bias; every second layer shifts the windows
  cyclically by ``M / 2`` and masks attention between pixels that were not neighbours before the shift.
* Sizes that are not multiples of ``M`` are padded (replicated edges) and the features cropped back.

Paper size (SwinIR-light): 60 channels, 4 RSTBs of 6 layers, 6 heads, window 8, MLP ratio 2: about 0.90 M
parameters without upsampler. Registered as the encoder ``encoder/swinir_light`` (``encoder: {type:
swinir_light}`` behind LIIF). Linear layers keep PyTorch's default initialisation; the bias tables start as
N(0, 0.02) truncated at two standard deviations.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.blocks import conv
from medsr.registry import MODELS


def window_partition(x: torch.Tensor, m: int) -> torch.Tensor:
    """``[B, H, W, C]`` (H, W multiples of ``m``) -> windows ``[B * nW, m * m, C]``, row-major."""
    B, H, W, C = x.shape
    x = x.view(B, H // m, m, W // m, m, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, m * m, C)


def window_merge(windows: torch.Tensor, m: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, m * m, C]`` -> ``[B, H, W, C]``."""
    C = windows.shape[-1]
    x = windows.view(-1, H // m, W // m, m, m, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def relative_index(m: int) -> torch.Tensor:
    """``[m*m, m*m]`` index into the ``(2m - 1)^2`` relative position table for every pair of window pixels."""
    yy, xx = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
    coords = torch.stack([yy.flatten(), xx.flatten()])
    rel = coords[:, :, None] - coords[:, None, :] + (m - 1)
    return rel[0] * (2 * m - 1) + rel[1]


def shift_mask(H: int, W: int, m: int, shift: int, device: torch.device) -> torch.Tensor:
    """Additive attention mask ``[nW, m*m, m*m]`` of the shifted windows: -100 between pixels of different regions
    of the cyclically shifted image (they were not adjacent), 0 otherwise."""
    region = torch.zeros(1, H, W, 1, device=device)
    bands = (slice(0, -m), slice(-m, -shift), slice(-shift, None))
    label = 0
    for ys in bands:
        for xs in bands:
            region[:, ys, xs] = label
            label += 1
    ids = window_partition(region, m).squeeze(-1)
    return (ids[:, None, :] != ids[:, :, None]).float() * -100.0


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ``m x m`` windows with a relative position bias per head."""

    def __init__(self, dim: int, heads: int, m: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"SwinIR: {dim} channels do not split into {heads} heads")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.empty((2 * m - 1) ** 2, heads))
        self.register_buffer("index", relative_index(m), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.table, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``x [N, T, C]`` (N windows of T pixels), ``mask [nW, T, T]`` or None -> ``[N, T, C]``."""
        N, T, C = x.shape
        q, k, v = self.qkv(x).view(N, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.table[self.index.flatten()].view(T, T, -1).permute(2, 0, 1)
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias
        if mask is not None:
            nW = mask.shape[0]
            attn = (attn.view(N // nW, nW, self.heads, T, T) + mask[None, :, None]).view(N, self.heads, T, T)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(N, T, C))


class SwinLayer(nn.Module):
    """One Swin Transformer layer on tokens ``[B, H, W, C]`` (H, W multiples of the window)."""

    def __init__(self, dim: int, heads: int, m: int, shift: int, mlp_ratio: float):
        super().__init__()
        self.m, self.shift = m, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, m)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        m, s = self.m, self.shift
        y = self.norm1(x)
        mask = None
        if s:
            y = torch.roll(y, (-s, -s), dims=(1, 2))
            mask = shift_mask(H, W, m, s, x.device).to(y.dtype)
        y = window_merge(self.attn(window_partition(y, m), mask), m, H, W)
        if s:
            y = torch.roll(y, (s, s), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class RSTB(nn.Module):
    """Residual Swin Transformer block: ``depth`` layers (every second one shifted), a 3x3 convolution, a skip."""

    def __init__(self, dim: int, depth: int, heads: int, m: int, mlp_ratio: float):
        super().__init__()
        self.layers = nn.ModuleList(SwinLayer(dim, heads, m, (m // 2) * (i % 2), mlp_ratio) for i in range(depth))
        self.conv = conv(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.layers:
            y = layer(y)
        return x + self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


@MODELS.register("encoder/swinir_light")
class SwinIRLightEncoder(nn.Module):
    """SwinIR's shallow and deep feature extraction without its upsampler (module docstring).

    ``[B, in_channels, h, w] -> [B, dim, h, w]``; defaults are SwinIR-light's; ``out_channels`` = ``dim``.
    """

    def __init__(self, in_channels: int = 1, dim: int = 60, depths: Sequence[int] = (6, 6, 6, 6), heads: int = 6,
                 window: int = 8, mlp_ratio: float = 2.0):
        super().__init__()
        if window < 2 or window % 2:
            raise ValueError(f"SwinIR: the window must be an even size >= 2, got {window}")
        self.window = window
        self.head = conv(in_channels, dim)
        self.embed_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(RSTB(dim, d, heads, window, mlp_ratio) for d in depths)
        self.norm = nn.LayerNorm(dim)
        self.body_conv = conv(dim, dim)
        self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.window
        x = F.pad(x, (0, -w % m, 0, -h % m), mode="replicate")
        shallow = self.head(x)
        t = self.embed_norm(shallow.permute(0, 2, 3, 1))
        for block in self.blocks:
            t = block(t)
        deep = self.body_conv(self.norm(t).permute(0, 3, 1, 2))
        return (shallow + deep)[..., :h, :w]
