"""The super-resolution model interface and the geometry helpers every architecture shares.

Interface (docs/architecture.md): ``forward(lr [B, S, h, w], out_size (H, W), ref [B, 1, hr, wr] | None)
-> [B, 1, H, W]``; the centre slice ``S // 2`` is the target, the scale per axis is ``out_size / lr size``.
A training forward may instead return a :class:`ModelOutput` carrying auxiliary outputs (e.g. SAKG's semantic
logits) for the losses; inference callers take the image with :func:`as_image`.

Geometry: pixel ``i`` of an axis of ``N`` pixels has the normalised coordinate ``(2 i + 1) / N - 1``, the
pixel-centre convention of ``F.interpolate(..., align_corners=False)`` and ``grid_sample(...,
align_corners=False)``, and the grid on which ``medsr.kspace.downsample`` samples its low-resolution images.

Output heads (``head`` constructor argument of every learned SR model; :meth:`SRModel.init_head`):

* ``"bicubic"``: bicubic upsampling of the centre slice plus the network's residual (the baselines as published);
* ``"kspace"``: k-space zero-filling of the centre slice plus the residual with its in-band part projected out
  (``band_split``), plus an optional zero-initialised in-band correction predicted at LR resolution
  (``in_band_correction``); the model's last residual layer starts at zero, so training starts exactly at
  zero-filling and the output's k-space band is the input's until the correction learns (SAKG's head, now
  available to every model).

In-band corrections (``in_band_correction``, with ``head="kspace"`` and ``band_split``):

* ``False``: none; the output's band is exactly the band of the input magnitude ``|x_lr|``;
* ``True``: free, a value added to the LR centre slice (it can rewrite the whole band);
* ``"sign"``: only what rectification changed. The LR input is a magnitude, ``LR = |x_lr|``, while the
  band-limited truth ``x_lr`` is negative where ringing dips below a zero background, so the band of ``|x_lr|``
  is not the HR's and no out-of-band residual can repair it. Since ``x_lr = s * LR`` with a sign map
  ``s = +-1``, the head multiplies the centre slice by ``1 - 2 p``, ``p = clamp(conv(features), 0, 1)`` a
  predicted "negative" map, and only where ``LR < SIGN_GATE`` (0.1 of medsr's intensity scale, the 99.5th
  percentile: a band-limited edge undershoots by about 9 % of its height, Gibbs' constant, so rectified
  ringing is small). It can reach the truth (``p = [x_lr < 0]``, exact for a real ``x_lr``: a real HR at an
  odd LR size, or up to its unpaired Nyquist line at an even one, wherever the ringing stays under the gate)
  but never makes a pixel's magnitude larger than ``LR`` nor touches a pixel above the gate, so it cannot
  rewrite the band elsewhere. ``p`` starts at exactly zero (zero-initialised convolution; the clamp passes
  gradients at 0), so the model starts as the ``False`` head, bit for bit. Ceilings and measurements:
  ``benchmarks/kspace_ceiling.py``, README (transfer section).

Non-negative magnitudes: with ``nonnegative`` (default) an evaluation-mode forward clamps the image at 0 (MR
magnitudes cannot be negative); a training forward returns the unclamped image, so pixels the loss pushes up
from below zero keep their gradient.

Paired initialisation: :func:`seeded_init` redraws every layer's parameters from a seed derived from
``(seed, module name)``, so removing one component leaves every other component's initial weights unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from medsr.errors import InputError
from medsr.kspace import band_projection, seed_from_name, zero_fill_upsample
from medsr.models.guidance import default_radius, guided_upsample

HEADS = ("kspace", "bicubic")
SIGN_GATE = 0.1  # the sign correction acts only where the normalised LR magnitude is below this (module docstring)


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


def zero_init(layer: nn.Module) -> nn.Module:
    """``layer`` with zero weight and bias, if it has one (a branch that starts as a no-op)."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def folded_for_inference(model: nn.Module) -> nn.Module:
    """An evaluation copy of ``model`` computing the same function faster on CPU: each ``Conv2d`` followed by a
    ``BatchNorm2d`` in an ``nn.Sequential`` folded into one convolution (:func:`torch.nn.utils.fusion.
    fuse_conv_bn_eval`, the running statistics) and the parameters in channels-last memory (PyTorch's oneDNN
    convolutions). ``model`` itself is left as it is (training and EMA keep their batch norms)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i], seq[i + 1] = fuse_conv_bn_eval(seq[i], seq[i + 1]), nn.Identity()
    return folded.to(memory_format=torch.channels_last)


def seeded_init(model: nn.Module, seed: int) -> nn.Module:
    """Redraw the parameters of every layer of ``model`` (in place; returned) from its own seed, derived from
    ``(seed, qualified module name)``, with the layer's own ``reset_parameters`` (PyTorch's defaults, SIREN's for
    sine layers). Layers whose parameters are all zero (zero-initialised branches) or all frozen (a loaded prior
    network) are left as they are. Children are redrawn
    before their parents, so a parent's own rule wins. The global RNG state is left as it was."""
    modules = [(name, m) for name, m in model.named_modules() if hasattr(m, "reset_parameters")]
    with torch.random.fork_rng(devices=[]):
        for name, module in reversed(modules):
            own = list(module.parameters(recurse=False))
            if own and all(not bool(p.detach().any()) or not p.requires_grad for p in own):
                continue
            torch.manual_seed(seed_from_name(f"{seed}:{name}"))
            module.reset_parameters()
    return model


class Denoiser(nn.Module):
    """Base of the image-to-image denoisers (``x [B, 1, H, W] -> [B, 1, H, W]`` on one grid, task ``denoise``):
    ``aux_outputs`` names what a training forward may return in ``ModelOutput.aux`` (read by the loss check)."""

    aux_outputs: tuple[str, ...] = ()


class SRModel(nn.Module):
    """Base class of medsr super-resolution networks.

    Capabilities, declared here so callers read them directly: ``fixed_scales`` (ints) restricts a model to
    integer scales equal on both axes (None = arbitrary scale); ``uses_ref`` says whether the model reads the
    reference contrast; ``n_slices`` is the input depth ``S`` used when a weights file does not record the
    training's ``n_adjacent``; ``aux_outputs`` names the auxiliary outputs a training forward may return in
    :attr:`ModelOutput.aux`; ``init_args`` maps constructor arguments that only initialise parameters from
    another weights file to the submodule they fill (e.g. SAKG's ``prior_init`` -> ``prior.net``): the
    constructor accepts and ignores them, :func:`medsr.checkpoint.build_model` loads the file after construction,
    and a weights file rebuilds the model without them because its own parameters replace them;
    ``uses_kspace`` says whether ``forward`` also takes the keywords ``mask`` and ``kspace`` of an undersampled
    input (:mod:`medsr.models.undersampled`).
    """

    fixed_scales: tuple[int, ...] | None = None
    init_args: dict[str, str] = {}
    uses_ref: bool = False
    n_slices: int = 1
    aux_outputs: tuple[str, ...] = ()
    uses_kspace: bool = False

    def init_head(self, head: str, features: int, *, band_split: bool = True,
                  in_band_correction: bool | str = True, nonnegative: bool = True,
                  reference_base: bool = False) -> None:
        """Configure the output head (module docstring): ``features`` channels feed the in-band correction, a
        zero-initialised 3x3 convolution at LR resolution (only with ``head="kspace"`` and ``band_split``):
        ``self.lr_correction`` (``in_band_correction=True``: a value added to the band) or ``self.lr_sign``
        (``"sign"``: the negative map ``p``). ``reference_base`` (k-space head only): when a reference is given, the
        residual is added to the band-consistent guided upsampling of the input by the reference
        (:func:`medsr.models.guidance.guided_upsample`, the training-free anchor) instead of to zero-filling."""
        if head not in HEADS:
            raise InputError("model.head", f"expected one of {', '.join(HEADS)}, got {head!r}")
        if not (isinstance(in_band_correction, bool) or in_band_correction == "sign"):
            raise InputError("model.in_band_correction", f"expected true, false or sign, got {in_band_correction!r}")
        if reference_base and head != "kspace":
            raise InputError("model.reference_base", "needs the k-space head (model.head: kspace)")
        self.output_head, self.band_split, self.nonnegative = head, band_split, nonnegative
        self.reference_base = bool(reference_base)
        correct = in_band_correction if head == "kspace" and band_split else False
        conv = zero_init(nn.Conv2d(features, 1, 3, padding=1)) if correct is not False else None
        self.lr_correction = conv if correct is True else None
        self.lr_sign = conv if correct == "sign" else None

    def starts_at_zero(self, layer: nn.Module) -> nn.Module:
        """``layer`` (the residual's last layer), zero-initialised under the k-space head."""
        return zero_init(layer) if self.output_head == "kspace" else layer

    def upsample_output(self, lr: torch.Tensor, residual: torch.Tensor, feats: torch.Tensor | None = None,
                        ref: torch.Tensor | None = None) -> torch.Tensor:
        """The image ``[B, 1, H, W]`` from the input stack ``lr``, the network's ``residual [B, 1, H, W]``, its
        LR-resolution features (for the in-band correction) and the reference (for ``reference_base``), under the
        configured head."""
        centre = self.centre_slice(lr)
        size = tuple(residual.shape[-2:])
        if self.output_head == "bicubic":
            image = bicubic_upsample(centre, size).to(residual.dtype) + residual
        else:
            if self.band_split:
                residual = residual - band_projection(residual, centre.shape[-2:])
            if self.lr_correction is not None:
                centre = centre + self.lr_correction(feats)
            if self.lr_sign is not None:
                gate = (centre < SIGN_GATE).to(centre.dtype)
                centre = centre * (1 - 2 * gate * self.lr_sign(feats).clamp(0, 1))
            if self.reference_base and ref is not None:
                scale = (size[0] / centre.shape[-2], size[1] / centre.shape[-1])
                base = guided_upsample(centre, size, ref, default_radius(scale))
            else:
                base = zero_fill_upsample(centre.float(), size, magnitude=False).real
            image = base.to(residual.dtype) + residual
        return image.clamp_min(0) if self.nonnegative and not self.training else image

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
    """``TypeError`` unless ``fixed_scales`` is None or a non-empty tuple of integers >= 1 (1: reconstruction on the
    input grid), ``uses_ref`` and ``uses_kspace`` bools, ``n_slices`` an odd positive integer and ``aux_outputs`` a
    tuple of names."""
    name, fixed = type(model).__name__, model.fixed_scales
    if fixed is not None and not (isinstance(fixed, tuple) and fixed and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in fixed)):
        raise TypeError(f"{name}.fixed_scales must be None or a tuple of integers >= 1, got {fixed!r}")
    for flag, value in (("uses_ref", model.uses_ref), ("uses_kspace", model.uses_kspace)):
        if not isinstance(value, bool):
            raise TypeError(f"{name}.{flag} must be a bool, got {value!r}")
    n = model.n_slices
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1 and n % 2 == 1):
        raise TypeError(f"{name}.n_slices must be an odd positive integer, got {n!r}")
    if not (isinstance(model.aux_outputs, tuple) and all(isinstance(a, str) for a in model.aux_outputs)):
        raise TypeError(f"{name}.aux_outputs must be a tuple of names, got {model.aux_outputs!r}")
