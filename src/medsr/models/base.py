"""The super-resolution model interface and the geometry helpers every architecture shares.

Interface (docs/architecture.md): ``forward(lr [B, S, h, w], out_size (H, W), ref [B, 1, hr, wr] | None)
-> [B, 1, H, W]``; the centre slice ``S // 2`` is the target, the scale per axis is ``out_size / lr size``.
A training forward may instead return a :class:`ModelOutput` carrying auxiliary outputs (e.g. SAKG's semantic
logits) for the losses; inference callers take the image with :func:`as_image`.

Geometry: pixel ``i`` of an axis of ``N`` pixels has the normalised coordinate ``(2 i + 1) / N - 1``, the
pixel-centre convention of ``F.interpolate(..., align_corners=False)`` and ``grid_sample(...,
align_corners=False)``, and the grid on which ``medsr.kspace.downsample`` samples its low-resolution images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from medsr.errors import InputError


@dataclass
class ModelOutput:
    """What a training forward may return: the image ``[B, 1, H, W]`` and named auxiliary tensors (no hidden
    state on the model, so a second forward, checkpointing or ``torch.compile`` cannot mix them up)."""

    image: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


Output = Union[torch.Tensor, ModelOutput]


def as_image(output: Output) -> torch.Tensor:
    """The image of a model's output, whether a tensor or a :class:`ModelOutput`."""
    return output.image if isinstance(output, ModelOutput) else output


def make_coord(
    shape: Sequence[int], device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Normalised pixel-centre coordinates ``[H, W, 2]`` of a grid of ``shape = (H, W)``.

    The last axis is ``(y, x)`` (row, column), matching tensor indexing. ``grid_sample`` expects ``(x, y)``:
    flip the last axis (``coord.flip(-1)``) before handing coordinates to it.
    """
    axes = [(2 * torch.arange(n, device=device, dtype=dtype or torch.float32) + 1) / n - 1 for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def make_cell(out_size: Sequence[int], batch: int, device: torch.device | None = None) -> torch.Tensor:
    """Per-axis size ``[B, H * W, 2]`` of one output pixel in normalised units, ``(2 / H, 2 / W)`` (LIIF's cell)."""
    H, W = int(out_size[0]), int(out_size[1])
    cell = torch.tensor([2.0 / H, 2.0 / W], device=device)
    return cell.expand(batch, H * W, 2)


def bicubic_upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bicubic resampling of ``[B, C, h, w]`` to ``size`` on the pixel-centre grid (``align_corners=False``)."""
    return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bicubic", align_corners=False)


class SRModel(nn.Module):
    """Base class of medsr super-resolution networks.

    Capabilities, declared here so callers read them directly: ``fixed_scales`` (ints) restricts a model to
    integer scales equal on both axes (None = arbitrary scale); ``uses_ref`` says whether the model reads the
    reference contrast; ``n_slices`` is the input depth ``S`` used when a weights file does not record the
    training's ``n_adjacent``; ``aux_outputs`` names the auxiliary outputs a training forward may return in
    :attr:`ModelOutput.aux`.
    """

    fixed_scales: tuple[int, ...] | None = None
    uses_ref: bool = False
    n_slices: int = 1
    aux_outputs: tuple[str, ...] = ()

    @staticmethod
    def centre_slice(lr: torch.Tensor) -> torch.Tensor:
        """The target slice ``[B, 1, h, w]`` of an input stack ``[B, S, h, w]``."""
        if lr.dim() != 4:
            raise ValueError(f"expected lr of shape [B, S, h, w], got {tuple(lr.shape)}")
        c = lr.shape[1] // 2
        return lr[:, c : c + 1]

    def check_scale(self, lr: torch.Tensor, out_size: Sequence[int]) -> tuple[float, float]:
        """Scale ``(sy, sx)`` from ``lr`` to ``out_size``; fixed scales are enforced (``ValueError``)."""
        h, w = lr.shape[-2:]
        H, W = int(out_size[0]), int(out_size[1])
        if H < 1 or W < 1:
            raise ValueError(f"out_size must be positive, got {tuple(out_size)}")
        if self.fixed_scales is not None and not any(H == s * h and W == s * w for s in self.fixed_scales):
            allowed = ", ".join(f"x{s}" for s in self.fixed_scales)
            name = type(self).__name__
            raise ValueError(f"{name} supports only the integer scales {allowed}; got {h}x{w} -> {H}x{W}")
        return H / h, W / w

    @staticmethod
    def check_ref(lr: torch.Tensor, ref: torch.Tensor | None) -> None:
        """Raise ``ValueError`` unless ``ref`` is None or a ``[B, 1, hr, wr]`` batch matching ``lr``'s."""
        if ref is not None and (ref.dim() != 4 or ref.shape[1] != 1 or ref.shape[0] != lr.shape[0]):
            raise ValueError(f"expected ref of shape [{lr.shape[0]}, 1, hr, wr], got {tuple(ref.shape)}")


def sr_model(model: nn.Module, source: object) -> SRModel:
    """``model`` itself when it is a super-resolution network whose declared capabilities are well formed (checked
    here once, so callers read them directly), else an :class:`InputError` naming ``source`` (e.g. a segmentation
    UNet's weights given to ``medsr test``); a malformed declaration is a bug of the model (``TypeError``)."""
    if not isinstance(model, SRModel):
        raise InputError(source, f"{type(model).__name__} is not a super-resolution model")
    check_capabilities(model)
    return model


def check_capabilities(model: SRModel) -> None:
    """``TypeError`` unless ``fixed_scales`` is None or a non-empty tuple of integers >= 2, ``uses_ref`` a bool,
    ``n_slices`` an odd positive integer and ``aux_outputs`` a tuple of names."""
    name, fixed = type(model).__name__, model.fixed_scales
    if fixed is not None and not (isinstance(fixed, tuple) and fixed and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 2 for s in fixed)):
        raise TypeError(f"{name}.fixed_scales must be None or a tuple of integers >= 2, got {fixed!r}")
    if not isinstance(model.uses_ref, bool):
        raise TypeError(f"{name}.uses_ref must be a bool, got {model.uses_ref!r}")
    n = model.n_slices
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1 and n % 2 == 1):
        raise TypeError(f"{name}.n_slices must be an odd positive integer, got {n!r}")
    if not (isinstance(model.aux_outputs, tuple) and all(isinstance(a, str) for a in model.aux_outputs)):
        raise TypeError(f"{name}.aux_outputs must be a tuple of names, got {model.aux_outputs!r}")
