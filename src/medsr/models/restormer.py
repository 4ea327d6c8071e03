"""A Restormer transformer block: multi-Dconv head transposed attention (MDTA) and a gated-Dconv feed-forward
network (GDFN), after Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image Restoration",
CVPR 2022.

MDTA attends across channels, not pixels: queries, keys and values come from a 1x1 then a depthwise 3x3
convolution; per head, ``softmax(temperature * q_hat k_hat^T) v`` with ``q_hat, k_hat`` L2-normalised along the
pixels, so the attention map is ``C/heads x C/heads`` and the cost is linear in the number of pixels. GDFN
expands the channels by ``expansion``, gates one depthwise-convolved half by the GELU of the other, and projects
back. Each sublayer is pre-normalised (layer norm over the channels of each pixel) and residual.
:func:`channel_attention` is shared with CNCL-lite's cross-attention fusion (:mod:`medsr.models.cncl_lite`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ChannelNorm(nn.Module):
    """Layer normalisation over the channels of each pixel of ``[B, C, H, W]`` (with bias)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def channel_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                      temperature: torch.Tensor) -> torch.Tensor:
    """Transposed (channel) attention of ``[B, C, H, W]`` queries, keys and values in ``heads`` groups of channels;
    ``temperature`` is ``[heads, 1, 1]``. Returns ``[B, C, H, W]``."""
    b, c, h, w = q.shape

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, heads, c // heads, h * w)

    q, k, v = split(q), split(k), split(v)
    attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * temperature
    return (attn.softmax(dim=-1) @ v).reshape(b, c, h, w)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention (self-attention across channels)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.qkv_dw = nn.Conv2d(3 * channels, 3 * channels, 3, padding=1, groups=3 * channels)
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        return self.project(channel_attention(q, k, v, self.heads, self.temperature))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network: ``project(gelu(a) * b)``, ``a, b`` the halves of a depthwise-convolved
    ``expansion``-fold 1x1 expansion."""

    def __init__(self, channels: int, expansion: float):
        super().__init__()
        hidden = max(1, int(channels * expansion))
        self.expand = nn.Conv2d(channels, 2 * hidden, 1)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.dw(self.expand(x)).chunk(2, dim=1)
        return self.project(F.gelu(a) * b)


class TransformerBlock(nn.Module):
    """``x + MDTA(norm(x))``, then ``x + GDFN(norm(x))``, on ``[B, channels, H, W]``."""

    def __init__(self, channels: int, heads: int = 2, expansion: float = 2.0):
        super().__init__()
        self.norm1, self.attn = ChannelNorm(channels), MDTA(channels, heads)
        self.norm2, self.ffn = ChannelNorm(channels), GDFN(channels, expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))
