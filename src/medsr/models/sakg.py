"""SAKG: semantic-aware, arbitrary-scale, multi-contrast MRI super-resolution with knowledge guidance.

The model follows the common interface ``forward(lr [B, S, h, w], out_size, ref [B, 1, hr, wr] | None)`` and has
three switchable components (constructor flags, for ablation):

(a) ``semantic``: tissue probabilities modulate the image features by per-pixel scale and shift (spatial feature
    transform, Wang et al., "Recovering Realistic Texture in Image Super-resolution by Deep Spatial Feature
    Transform", CVPR 2018). Where the probabilities come from is ``prior``:

    * ``"learned"``: a light head predicts them from each slice's LR features and the reference context, trained
      jointly by the ``sakg_semantic`` loss (cross-entropy on the logits a training forward returns in
      ``ModelOutput.aux["semantic"]``); one SFT layer after the encoder;
    * ``"external"``: a frozen tissue segmenter outside the SR network (SFTGAN's design: the segmenter is trained
      first, on its own, then fixed) reads each LR slice with the reference resampled to the LR grid (or an
      absent-reference channel), and its probabilities are injected at two depths (after the encoder, per slice,
      and after the slice/reference fusion). ``prior_dropout`` replaces a training sample's prior by the uniform
      one, so the network also works where the prior is wrong or missing. ``prior_net`` is the segmenter's
      ``unet`` spec (3 input channels), ``prior_init`` its trained weights file (``benchmarks/fair.py`` trains
      it as its first stage), loaded into ``prior.net`` by the model builder
      (:func:`medsr.checkpoint.build_model`, ``init_args``) after construction: no constructor reads a file.
      The parameters live in this model's state dict, so the weights file alone rebuilds it.
(b) ``slice_attention``: fusion of the 2k+1 adjacent slices' features (``fusion``): ``"softmax"``, per pixel and
    channel a softmax over slices of scores from each slice's features, the centre's and both priors;
    ``"residual"``, the centre's features plus a zero-initialised gate times the attention-weighted differences
    to the neighbours (so it starts exactly as the centre slice); ``"mean"``, fixed fusion (the plain mean).
    Without it only the centre slice is encoded.
(c) ``scale_conditioning``: the implicit decoder (LIIF's local ensemble, Chen et al. CVPR 2021) is conditioned
    on the relative coordinate, the target scale and the reference's resolution relative to the output, so target
    and reference scales are independent (asymmetric included); without it, on the relative coordinate only.
    ``scale_embedding``: ``"linear"`` feeds the raw cell size and reference/output size ratio to linear layers;
    ``"log"`` feeds normalised log-scales (``log2(scale) / 3``, 0 at x1 and 1 at x8, per axis) and a separate
    "reference present, reference log-scale" embedding, both through zero-initialised projections (so the
    conditioning starts as a no-op and cannot swamp the code term).

Efficiency (the budget is 150 GMACs per 256x256 slice at x2 with an HR reference): the target encoder runs at LR
resolution; the reference is pixel-unshuffled by 2 before its encoder; the decoder's first layer is linear, so
its code term is a 1x1 convolution at LR resolution and its reference term a 3x3 convolution at reference
resolution, both resampled to the queries; per query only one Hd x Hd layer runs for each of the four ensemble
codes, and two after blending them.

Output (the k-space head of :mod:`medsr.models.base`, shared with every baseline): ``zero_fill_upsample(centre slice)`` (real part: the exact inverse of the k-space crop inside the band)
plus a learned residual whose last layer starts at zero, so training starts at the zero-filling floor. With
``band_split`` (default) k-space is learned in two halves: the decoder's residual keeps only the frequencies
outside the LR band (its in-band part is projected out), and the in-band content is the input plus a
zero-initialised correction predicted at LR resolution (3x3 convolution on the fused features). A hard
data-consistency step (band = input) would be wrong here: inputs are magnitude images, and ``|LR|`` differs from
the band of the HR image wherever ringing went negative. Whether each of these components helps is measured, with
seeds and paired ablations, by ``benchmarks/fair.py`` (results in ``benchmarks/results/quality/``).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medsr.errors import InputError
from medsr.models.base import ModelOutput, Output, SRModel, zero_init
from medsr.models.blocks import Query, ResBlock, build_encoder, conv, decode_grid
from medsr.models.unet import UNet
from medsr.registry import MODELS

DEFAULT_ENCODER = {"type": "rdn", "n_feats": 64, "n_blocks": 6, "growth": 32, "n_layers": 4}
DEFAULT_REF_ENCODER = {"type": "edsr", "n_feats": 32, "n_blocks": 4}
DEFAULT_PRIOR_NET = {"type": "unet", "in_channels": 3, "base": 8, "depth": 2}
PRIORS = ("learned", "external")
FUSIONS = ("softmax", "residual", "mean")
SCALE_EMBEDDINGS = ("linear", "log")


class SFT(nn.Module):
    """Spatial feature transform: ``feat * (1 + gamma) + beta``, gamma and beta from a condition network on the
    tissue probabilities (zero-initialised: starts as the identity)."""

    def __init__(self, n_feats: int, n_classes: int, width: int):
        super().__init__()
        self.condition = nn.Sequential(conv(n_classes, width), nn.ReLU(inplace=True))
        self.scale = zero_init(conv(width, n_feats, 1))
        self.shift = zero_init(conv(width, n_feats, 1))

    def forward(self, feat: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
        c = self.condition(prob)
        return feat * (1 + self.scale(c)) + self.shift(c)


class SemanticEmbedding(SFT):
    """The learned prior: tissue logits from features (+ context), then the SFT layer on their probabilities."""

    def __init__(self, n_feats: int, ctx_feats: int, n_classes: int, width: int):
        super().__init__(n_feats, n_classes, width)
        self.head = nn.Sequential(conv(n_feats + ctx_feats, width), nn.ReLU(inplace=True), conv(width, n_classes, 1))

    def forward(self, feat: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``feat [N, C, h, w]``, ``ctx [N, Cr, h, w]`` -> (modulated features, logits, probabilities)."""
        logits = self.head(torch.cat([feat, ctx], dim=1))
        prob = logits.softmax(dim=1)
        return super().forward(feat, prob), logits, prob


class ExternalPrior(nn.Module):
    """A frozen tissue segmenter (``unet``) on ``[LR slice, reference on the LR grid, reference present]``: its
    parameters never require gradients and it always runs in eval mode (frozen batch-norm statistics)."""

    def __init__(self, spec: dict[str, Any], n_classes: int):
        super().__init__()
        spec = {**DEFAULT_PRIOR_NET, "num_classes": n_classes, **spec}
        if spec["type"] != "unet" or spec["in_channels"] != 3 or spec["num_classes"] != n_classes:
            raise InputError("model.prior_net", f"expected a unet with in_channels 3 and {n_classes} classes, got "
                             f"{spec}")
        self.net = UNet(**{k: v for k, v in spec.items() if k != "type"})
        self.net.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "ExternalPrior":
        super().train(mode)
        self.net.eval()
        return self

    @staticmethod
    def inputs(slices: torch.Tensor, ref_lr: torch.Tensor | None) -> torch.Tensor:
        """``[N, 3, h, w]`` from LR slices ``[N, 1, h, w]`` and the reference on their grid (or None)."""
        if ref_lr is None:
            zeros = torch.zeros_like(slices)
            return torch.cat([slices, zeros, zeros], dim=1)
        return torch.cat([slices, ref_lr, torch.ones_like(slices)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, n_classes, h, w]`` of :meth:`inputs`."""
        return self.net(x)


class SliceAttention(nn.Module):
    """Fusion of the S slices' features (``form``, module docstring): softmax attention with scores from (slice,
    centre, slice prior, centre prior), its residual form, or the fixed mean."""

    def __init__(self, n_feats: int, prior_channels: int, form: str = "softmax"):
        super().__init__()
        if form not in FUSIONS:
            raise InputError("model.fusion", f"expected one of {', '.join(FUSIONS)}, got {form!r}")
        self.form = form
        if form != "mean":
            self.score = nn.Sequential(
                conv(2 * n_feats + 2 * prior_channels, n_feats), nn.ReLU(inplace=True), conv(n_feats, n_feats)
            )
        self.gate = zero_init(conv(n_feats, n_feats, 1)) if form == "residual" else None

    def forward(self, feats: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """``feats [B, S, C, h, w]``, ``priors [B, S, P, h, w]`` (P may be 0) -> ``[B, C, h, w]``."""
        if self.form == "mean":
            return feats.mean(dim=1)
        B, S = feats.shape[:2]
        c = S // 2
        centre = feats[:, c : c + 1]
        pairs = torch.cat([feats, centre.expand_as(feats), priors, priors[:, c : c + 1].expand_as(priors)], dim=2)
        weights = self.score(pairs.flatten(0, 1)).view_as(feats).softmax(dim=1)
        if self.gate is None:
            return (weights * feats).sum(dim=1)
        return centre[:, 0] + self.gate(centre[:, 0]) * (weights * (feats - centre)).sum(dim=1)


def log_scale(ratio: torch.Tensor) -> torch.Tensor:
    """Normalised log-scale ``log2(ratio) / 3`` (0 at x1, 1 at x8)."""
    return torch.log2(ratio) / 3


class ReferenceEncoder(nn.Module):
    """Reference branch at half the reference's resolution: pixel-unshuffle by 2 (replicate-padded to even size,
    no information lost), then a light encoder. Also a 3x3 convolution at full resolution for the decoder."""

    def __init__(self, spec: dict[str, Any], hidden: int):
        super().__init__()
        self.encoder = build_encoder(spec, in_channels=4)
        self.out_channels = self.encoder.out_channels
        self.local = conv(1, hidden)

    def forward(self, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``ref [B, 1, hr, wr]`` -> (context ``[B, Cr, ceil(hr/2), ceil(wr/2)]``, local ``[B, Hd, hr, wr]``)."""
        hr, wr = ref.shape[-2:]
        padded = F.pad(ref, (0, wr % 2, 0, hr % 2), mode="replicate")
        return self.encoder(F.pixel_unshuffle(padded, 2)), self.local(ref)


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resampling on the pixel-centre grid (``align_corners=False``), antialiased when shrinking."""
    size = (int(size[0]), int(size[1]))
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


@MODELS.register("sakg")
class SAKG(SRModel):
    """Semantic-aware arbitrary-scale multi-contrast SR (see the module docstring).

    ``encoder``: spec of the per-slice LR encoder (``blocks.build_encoder``, shared across slices);
    ``ref_encoder``: spec of the reference encoder (on 4 unshuffled channels); ``n_classes``: tissue classes of
    the semantic head (4 = background, CSF, GM, WM); ``sem_width``: width of the semantic head and condition
    network; ``n_fuse``: residual blocks after fusing slices and reference; ``hidden``: decoder width Hd;
    ``prior``, ``prior_net``, ``prior_init``, ``prior_dropout``: where the semantic prior comes from (module
    docstring, (a)); ``fusion``: how slice attention fuses the slices ((b)); ``scale_embedding``: how the scales
    are fed to the decoder ((c));
    ``band_split``: learn the in-band and out-of-band parts of k-space separately (module docstring);
    ``in_band_correction``: with ``band_split``, also learn the in-band correction (False: the output's band is
    the input's exactly, so the model can only add what lies outside it; ``"sign"``: only the signs that the
    magnitude input lost, ``models.base``); ``reference_base``: with a reference, the residual is added to the
    band-consistent guided upsampling by the reference instead of zero-filling (``models.base``); ``head``:
    ``"kspace"`` (the above) or
    ``"bicubic"`` (bicubic centre slice + residual, for the controlled comparison); ``nonnegative``: clamp
    evaluation outputs at 0 (``models.base``);
    ``chunk``: decoder rows per call (memory only). The defaults cost about 65 GMACs at x2 on 256x256 with an
    HR reference and 3 slices (``benchmarks/flops.py``).
    """

    uses_ref = True
    aux_outputs = ("semantic",)  # the learned prior's logits; absent otherwise (the loss is then zero)
    init_args = {"prior_init": "prior.net"}

    def __init__(
        self,
        encoder: dict[str, Any] | None = None,
        ref_encoder: dict[str, Any] | None = None,
        n_classes: int = 4,
        sem_width: int = 32,
        n_fuse: int = 2,
        hidden: int = 128,
        semantic: bool = True,
        slice_attention: bool = True,
        scale_conditioning: bool = True,
        prior: str = "learned",
        prior_net: dict[str, Any] | None = None,
        prior_init: str | None = None,
        prior_dropout: float = 0.2,
        fusion: str = "softmax",
        scale_embedding: str = "linear",
        band_split: bool = True,
        in_band_correction: bool | str = True,
        reference_base: bool = False,
        head: str = "kspace",
        nonnegative: bool = True,
        chunk: int = 1 << 16,
    ):
        super().__init__()
        self.encoder = build_encoder(encoder or DEFAULT_ENCODER)
        C = self.encoder.out_channels
        self.reference = ReferenceEncoder(ref_encoder or DEFAULT_REF_ENCODER, hidden)
        Cr = self.reference.out_channels
        if prior not in PRIORS:
            raise InputError("model.prior", f"expected one of {', '.join(PRIORS)}, got {prior!r}")
        if scale_embedding not in SCALE_EMBEDDINGS:
            raise InputError("model.scale_embedding", f"expected one of {', '.join(SCALE_EMBEDDINGS)}, got "
                             f"{scale_embedding!r}")
        if not 0 <= prior_dropout < 1:
            raise InputError("model.prior_dropout", f"expected a probability in [0, 1), got {prior_dropout!r}")
        learned, external = semantic and prior == "learned", semantic and prior == "external"
        self.semantic = SemanticEmbedding(C, Cr, n_classes, sem_width) if learned else None
        self.prior = ExternalPrior(prior_net or {}, n_classes) if external else None
        self.prior_sft = nn.ModuleList([SFT(C, n_classes, sem_width) for _ in range(2)]) if external else None
        self.prior_dropout, self.n_classes = prior_dropout, n_classes
        self.attention = SliceAttention(C, n_classes if semantic else 0, fusion) if slice_attention else None
        self.fuse = nn.Sequential(conv(C + Cr, C, 1), *[ResBlock(C) for _ in range(n_fuse)])
        self.code = conv(C, hidden, 1)
        self.rel = nn.Linear(2, hidden, bias=False)
        self.scale_embedding = scale_embedding
        log = scale_embedding == "log"
        self.cell = nn.Linear(2, hidden, bias=False) if scale_conditioning else None
        self.ref_scale = nn.Linear(3 if log else 2, hidden, bias=False) if scale_conditioning else None
        if log and scale_conditioning:
            zero_init(self.cell)
            zero_init(self.ref_scale)
        self.local = nn.Linear(hidden, hidden)
        self.ref_code = conv(Cr, hidden, 1)
        self.blend = conv(hidden, hidden, 1)
        self.head = nn.Sequential(
            nn.ReLU(inplace=True), conv(hidden, hidden, 1), nn.ReLU(inplace=True), zero_init(conv(hidden, 1, 1))
        )
        self.init_head(head, C, band_split=band_split, in_band_correction=in_band_correction, nonnegative=nonnegative,
                       reference_base=reference_base)
        self.chunk = chunk

    @contextlib.contextmanager
    def probe(self, prior_logits: Callable[[torch.Tensor], torch.Tensor] | None = None,
              scale_code: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[None]:
        """Evaluation probes, declared here so that callers (``benchmarks/fair.py``) name no internal module:
        inside the block, the tissue logits ``[N, n_classes, h, w]`` of the semantic prior (the learned head's or
        the external segmenter's) become ``prior_logits(logits)`` (zeros: a uniform prior), and the scale code
        the decoder's scale conditioning reads (the cell sizes, or their log scales with ``scale_embedding:
        log``) becomes ``scale_code(code)``. A probe the model has no part for (no prior, no scale
        conditioning) does nothing."""
        prior = self.semantic.head if self.semantic is not None else self.prior
        hooks = []
        if prior_logits is not None and prior is not None:
            hooks.append(prior.register_forward_hook(lambda module, inputs, logits: prior_logits(logits)))
        if scale_code is not None and self.cell is not None:
            hooks.append(self.cell.register_forward_pre_hook(lambda module, inputs: (scale_code(inputs[0]),)))
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()

    def _decode_query(self, q: Query) -> torch.Tensor:
        h = q.feat + self.rel(q.rel)
        if self.cell is not None:
            h = h + self.cell(log_scale(2 / q.cell) if self.scale_embedding == "log" else q.cell)
        return F.relu(self.local(F.relu(h)))

    def _reference_code(self, ref: torch.Tensor | None, B: int, out_size: tuple[int, int],
                        like: torch.Tensor) -> torch.Tensor | float:
        """The reference-resolution embedding ``[B, Hd, 1, 1]`` (scale conditioning): raw size ratios (linear) or
        ``[present, log-scale y, log-scale x]`` (log); zero without a reference."""
        if ref is None:
            return 0.0  # a bias-free projection of zeros
        ratio = like.new_tensor([ref.shape[-2] / out_size[0], ref.shape[-1] / out_size[1]]).expand(B, 2)
        if self.scale_embedding == "log":
            ratio = torch.cat([ratio.new_ones(B, 1), -log_scale(ratio)], dim=1)
        return self.ref_scale(ratio)[:, :, None, None]

    def _external_prior(self, lr: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
        """Probabilities ``[B * S, n_classes, h, w]`` of the frozen segmenter on every slice of ``lr [B, S, h, w]``
        (the reference resampled to the LR grid); in training a sample's prior is uniform with ``prior_dropout``."""
        B, S, h, w = lr.shape
        ref_lr = None if ref is None else resize(ref, (h, w)).repeat_interleave(S, dim=0)
        with torch.no_grad():
            prob = self.prior(ExternalPrior.inputs(lr.reshape(B * S, 1, h, w), ref_lr)).softmax(dim=1)
        if self.training and self.prior_dropout > 0:
            drop = torch.rand(B, device=lr.device) < self.prior_dropout
            prob = torch.where(drop.repeat_interleave(S)[:, None, None, None], 1.0 / self.n_classes, prob)
        return prob

    def _features(self, lr: torch.Tensor, ctx: torch.Tensor, ref: torch.Tensor | None
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-slice encoding, semantic modulation and slice fusion, fused with the reference context; and the
        centre slice's semantic logits ``[B, n_classes, h, w]`` (``{"semantic": ...}``, learned prior only)."""
        B, S, h, w = lr.shape
        if self.attention is None:
            lr, S = self.centre_slice(lr), 1
        feats = self.encoder(lr.reshape(B * S, 1, h, w))
        priors = feats.new_zeros(B * S, 0, h, w)
        aux = {}
        if self.semantic is not None:
            feats, logits, priors = self.semantic(feats, ctx.repeat_interleave(S, dim=0))
            aux["semantic"] = logits.view(B, S, *logits.shape[1:])[:, S // 2]
        elif self.prior is not None:
            priors = self._external_prior(lr, ref).to(feats.dtype)
            feats = self.prior_sft[0](feats, priors)
        feats = feats.view(B, S, -1, h, w)
        priors = priors.view(B, S, -1, h, w)
        fused = feats[:, 0] if self.attention is None else self.attention(feats, priors)
        fused = fused + self.fuse(torch.cat([fused, ctx], dim=1))
        if self.prior is not None:
            fused = self.prior_sft[1](fused, priors[:, S // 2])
        return fused, aux

    def forward(self, lr: torch.Tensor, out_size: Sequence[int], ref: torch.Tensor | None = None) -> Output:
        """The image ``[B, 1, H, W]``; in training mode a :class:`ModelOutput` with the semantic logits too."""
        self.check_scale(lr, out_size)
        self.check_ref(lr, ref)
        B, _, h, w = lr.shape
        H, W = int(out_size[0]), int(out_size[1])
        if ref is None:
            ctx = lr.new_zeros(B, self.reference.out_channels, h, w)
            ref_term = 0.0
        else:
            ref_ctx, ref_local = self.reference(ref)
            ctx = resize(ref_ctx, (h, w))
            ref_term = resize(ref_local, (H, W)) + resize(self.ref_code(ref_ctx), (H, W))
        feats, aux = self._features(lr, ctx, ref)
        code = self.code(feats)
        blended = decode_grid(code, (H, W), self._decode_query, ensemble=True, chunk=self.chunk)
        z = self.blend(blended) + ref_term
        if self.ref_scale is not None:
            z = z + self._reference_code(ref, B, (H, W), lr)
        image = self.upsample_output(lr, self.head(z), feats, ref)
        return ModelOutput(image, aux) if self.training else image
