"""``task: segmentation``: trains a tissue-segmentation network (e.g. ``unet``) on image slices and their labels.

Data: :class:`~medsr.data.labelled.LabelledSliceDataset` over ``data.target`` (no degradation, no k-space round
trip, no curriculum; ``data.patch_size`` crops square patches, ``data.augment`` flips/rotates image and label
together), batched by :class:`~medsr.data.datasets.StepBatchSampler`. Losses are the segmentation terms of
``medsr.losses.segmentation`` (``cross_entropy``, ``dice``) on the logits against the label map. Validation
scores the EMA network on the validation volumes: Dice per tissue class per volume, mean over volumes and
classes (``val/dice``), which selects ``best.ckpt``. The exported ``weights.pth`` is the frozen feature network of
the ``seg_perceptual`` loss.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from medsr.data.labelled import LabelledSliceDataset
from medsr.inference.segment import num_classes, segment
from medsr.metrics.seg import dice_per_class
from medsr.registry import TASKS
from medsr.tasks.base import TrainingTask


@TASKS.register("segmentation")
class SegmentationTask(TrainingTask):
    """The network applied to ``image``, the losses compared with ``label``."""

    data_keys = frozenset({"target", "patch_size", "augment"})
    monitor = "val/dice"

    def dataset(self, split: str, *, training: bool) -> LabelledSliceDataset:
        d = self.cfg.data
        return LabelledSliceDataset(d.root, split, d.target, patch_size=d.patch_size if training else None,
                                    augment=d.augment and training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def compute_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        logits = self.model(batch["image"])
        loss, terms = self.criterion(logits, batch["label"], batch)
        return loss, terms, logits

    def validation_metrics(self, trainer: Any, dataset: LabelledSliceDataset,
                           subjects: Sequence[str]) -> dict[str, float]:
        """Dice per tissue (labels 1..C-1) per volume of this rank's ``subjects``, summed over ranks, then the mean
        over volumes; ``val/dice`` is the mean over tissues."""
        names = dataset.label_names
        model = self.eval_model
        classes = list(range(1, num_classes(model)))
        totals = torch.zeros(len(classes) + 1, dtype=torch.float64)
        for _, image, label in dataset.volumes(set(subjects)):
            pred = segment(model, image, self.cfg.val.batch_size)
            totals += torch.cat([torch.ones(1, dtype=torch.float64), dice_per_class(pred, label, classes)])
        totals = trainer.strategy.reduce(totals.to(self.device), reduce_op="sum").cpu()
        n = max(float(totals[0]), 1.0)
        metrics = {f"val/dice_{names.get(str(c), c)}": float(v) / n for c, v in zip(classes, totals[1:])}
        metrics["val/dice"] = sum(metrics.values()) / len(metrics)
        return metrics

    def export_meta(self) -> dict[str, Any]:
        return {"contrasts": {"target": self.cfg.data.target, "ref": None, "pairs": []}}
