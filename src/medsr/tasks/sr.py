"""``task: sr``: super-resolution of ``lr`` stacks to the ``hr`` grid, optionally guided by a reference contrast.

Data: :class:`~medsr.data.datasets.SRSliceDataset` (or a :class:`~medsr.data.mixture.PairMixture` over
``data.pairs``; for training with ``data.dataset: synth``, mixed with generated items by
:class:`~medsr.data.synth.SynthMixture`), degraded on the fly in k-space at the scales the curriculum draws per step
(:class:`~medsr.data.datasets.ScaleBatchSampler`). Validation: PSNR/SSIM per validation scale on whole volumes,
exactly as ``medsr test`` scores them (:mod:`medsr.evaluation.testing`); ``val/psnr`` (the mean over scales)
selects ``best.ckpt``. Supports ``train.gan`` (real images: ``hr``).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import lightning.pytorch as pl
import torch

from medsr import config
from medsr.data.datasets import ScaleBatchSampler, SRSliceDataset
from medsr.data.masks import CONFIG_KEYS, parse_mask
from medsr.data.mixture import PairMixture, parse_pair
from medsr.data.synth import SynthMixture, SynthSliceDataset
from medsr.errors import InputError
from medsr.evaluation import scores
from medsr.models.base import Output, sr_model
from medsr.registry import TASKS
from medsr.scales import ChoiceScale, Curriculum, FixedScale
from medsr.tasks.base import TrainingTask


def check_fixed_scales(fixed: tuple[int, ...] | None, curriculum: Curriculum, val_scales: Sequence[float] = ()
                       ) -> None:
    """A fixed-scale model (``fixed`` scales, None: any) trains only on a curriculum drawing from those scales and
    is validated only at them."""
    if fixed is None:
        return
    named = ", ".join(f"x{s}" for s in fixed)
    for i, scale in enumerate(val_scales):
        if scale not in fixed:
            raise InputError(f"val.scales[{i}]", f"the model only supports the fixed scales {named}, got x{scale:g}")
    for i, stage in enumerate(curriculum.stages):
        sampler = stage.scale
        values = set(sampler.value) if isinstance(sampler, FixedScale) else (
            set(sampler.values) if isinstance(sampler, ChoiceScale) else None)
        if values is None or sampler.asymmetric or not values <= set(fixed):
            raise InputError("data.curriculum", f"stage {i}: the model only supports the fixed scales "
                             f"{named}, but the stage draws {sampler}")


@TASKS.register("sr")
class SRTask(TrainingTask):
    """Trains ``cfg.model`` on batches ``{lr, hr, ref?}`` with the weighted loss list ``cfg.loss``."""

    data_keys = frozenset({"dataset", "target", "ref", "n_adjacent", "patch_size", "augment", "use_labels",
                           "curriculum", "pairs", "synth", "mask", "phase", "slices"})
    monitor = "val/psnr"
    adversarial_target = "hr"

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        # A bad curriculum, or one the model cannot follow, fails here, before any run directory exists.
        check_fixed_scales(sr_model(self.model, "model").fixed_scales, self.curriculum, self.val_scales)

    @functools.cached_property
    def curriculum(self) -> Curriculum:
        return config.curriculum(self.cfg)

    @property
    def val_scales(self) -> tuple[float, ...]:
        """The scales validation scores (``val.scales``)."""
        return tuple(self.cfg.val.scales)

    def dataset(self, split: str, *, training: bool) -> Any:
        """The store's dataset of ``split``; for training with ``data.dataset: synth``, mixed with generated items."""
        d = self.cfg.data
        mask = parse_mask(d.mask.type, d.mask.acceleration, d.mask.center_fraction, d.mask.grid, d.mask.file,
                          CONFIG_KEYS)
        if mask is not None and d.dataset == "synth":
            raise InputError("data.mask", "generated items (data.dataset: synth) are not undersampled yet")
        pairs = [parse_pair(p) for p in d.pairs] if training and d.pairs else [(d.target, d.ref)]
        sets = [
            SRSliceDataset(d.root, split, target, ref=ref, n_adjacent=d.n_adjacent,
                           patch_size=d.patch_size if training else None, augment=d.augment and training,
                           use_labels=d.use_labels, mask=mask, phase=d.phase, slices=d.slices)
            for target, ref in pairs
        ]
        real = sets[0] if len(sets) == 1 else PairMixture(sets)
        if not training or d.dataset != "synth":
            return real
        synth = SynthSliceDataset(d.root, d.synth, split=split, n_adjacent=d.n_adjacent, patch_size=d.patch_size,
                                  use_labels=d.use_labels, length=len(real), phase=d.phase)
        return SynthMixture(real, synth, d.synth.real_fraction)

    def batch_sampler(self, num_items: int, **position: Any) -> ScaleBatchSampler:
        return ScaleBatchSampler(num_items, self.cfg.data.batch_size, self.curriculum, self.cfg.seed, **position)

    def forward(self, lr: torch.Tensor, out_size: tuple[int, int], ref: torch.Tensor | None = None) -> Output:
        return self.model(lr, out_size, ref)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], Output]:
        hr = batch["hr"]
        output = self.model(batch["lr"], tuple(hr.shape[-2:]), batch.get("ref"))
        loss, terms = self.criterion(output, hr, batch)
        return loss, terms, output

    def validation_metrics(self, trainer: pl.Trainer, dataset: Any, subjects: Sequence[str]) -> dict[str, float]:
        """PSNR/SSIM per validation scale over the volumes of this rank's ``subjects`` (per-volume sums reduced
        over ranks), and ``val/psnr``, their mean over scales. Keeps a sample slice in ``val_sample``."""
        cfg = self.cfg
        metrics: dict[str, float] = {}
        self.val_sample = None
        for scale in self.val_scales:
            volume_scores, sample = scores.evaluate_scale(
                self.eval_model, dataset, scale, cfg.val.ref, ref_scale=cfg.val.ref_scale, device=self.device,
                batch_size=cfg.val.batch_size, subjects=subjects,
            )
            if sample and self.val_sample is None:
                self.val_sample = {**sample, "scale": scale}
            totals = trainer.strategy.reduce(scores.moments(volume_scores).to(self.device), reduce_op="sum").cpu()
            summary = scores.summarise(totals)
            metrics[f"val/psnr_x{scale:g}"] = summary.psnr
            metrics[f"val/ssim_x{scale:g}"] = summary.ssim
        psnrs = [v for k, v in metrics.items() if k.startswith("val/psnr_")]
        metrics["val/psnr"] = sum(psnrs) / len(psnrs)
        return metrics

    def export_meta(self) -> dict[str, Any]:
        lo, hi = self.curriculum.scale_range()
        d = self.cfg.data
        return {"scales": [lo, hi], "contrasts": {"target": d.target, "ref": d.ref, "pairs": list(d.pairs)},
                "n_adjacent": d.n_adjacent}
