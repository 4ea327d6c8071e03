"""``task: segmentation``: trains a tissue-segmentation network (e.g. ``unet``) on HR slices and their labels.

It reuses the whole SR engine (data pipeline, optimiser, schedule, EMA, checkpoints, resume, export): the
dataset's ``hr`` slices (or patches) are the input and ``label`` the target, so the config needs
``data.use_labels: true``; a curriculum at scale 1 (``{type: fixed, value: 1}``, ``ref: none``) makes the LR
half of each item trivial. Losses are the segmentation terms of ``medsr.losses.segmentation`` (``cross_entropy``,
``dice``). Validation scores the EMA network on the validation volumes: Dice per tissue class per volume, mean
over volumes and classes (``val/dice``), which selects ``best.ckpt``. The exported ``weights.pth`` is the frozen
feature network of the ``seg_perceptual`` loss and the downstream segmenter of ``benchmarks/quality.py``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from medsr.engine.module import SRModule
from medsr.errors import InputError


@torch.no_grad()
def segment(model: nn.Module, images: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Label map ``[N, H, W]`` (argmax of the logits) of images ``[N, 1, H, W]``, in batches, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model(images[i : i + batch_size].to(device)).argmax(dim=1).cpu()
                      for i in range(0, images.shape[0], batch_size)])


def dice_per_class(pred: torch.Tensor, gt: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Dice ``2 |P ∩ G| / (|P| + |G|)`` of each class over a whole label volume (1 when absent from both)."""
    scores = []
    for c in classes:
        p, g = pred == c, gt == c
        total = int(p.sum() + g.sum())
        scores.append(1.0 if total == 0 else 2.0 * float((p & g).sum()) / total)
    return torch.tensor(scores, dtype=torch.float64)


def volumes(dataset: Any, batch_size: int, subjects: set[str] | None) -> Any:
    """``(subject, hr [Z, 1, H, W], label [Z, H, W])`` for each whole volume of an evaluation dataset."""
    from medsr.data.datasets import eval_specs
    from medsr.engine.evaluation import collate, volume_batches

    def volume(sid: str, batches: list[dict[str, Any]]) -> tuple[str, torch.Tensor, torch.Tensor]:
        return sid, torch.cat([b["hr"] for b in batches]), torch.cat([b["label"] for b in batches])

    current, batches = None, []
    for sid, chunk in volume_batches(dataset, eval_specs(dataset, (1.0, 1.0), "none"), batch_size, subjects):
        if batches and sid != current:  # batches never mix subjects and come subject by subject
            yield volume(current, batches)
            batches = []
        current = sid
        batches.append(collate([dataset[spec] for spec in chunk]))
    if batches:
        yield volume(current, batches)


def num_classes(model: nn.Module) -> int:
    """Output classes of a segmentation network (its final 1x1 ``classifier``)."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Conv2d):
        raise ValueError(f"{type(model).__name__} is not a segmentation network with a classifier layer")
    return classifier.out_channels


class SegmentationModule(SRModule):
    """The SR training module with the network applied to ``hr`` and the losses compared with ``label``."""

    monitor = "val/dice"

    def __init__(self, cfg: Any):
        if not cfg.data.use_labels:
            raise InputError("data.use_labels", "task: segmentation needs labels (set it to true)")
        if cfg.train.gan.enabled:
            raise InputError("train.gan.enabled", "no adversarial mode for task: segmentation")
        super().__init__(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _generator_loss(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        if "label" not in batch:
            raise InputError(self.cfg.data.root, "the training data has no labels")
        logits = self.model(batch["hr"])
        loss, terms = self.criterion(logits, batch["hr"], batch)
        return logits, loss, terms

    def validation_metrics(self, trainer: Any, dataset: Any, subjects: Sequence[str]) -> dict[str, float]:
        """Dice per tissue (labels 1..C-1) per volume of this rank's ``subjects``, summed over ranks, then the mean
        over volumes; ``val/dice`` is the mean over tissues."""
        names = dataset.store.manifest.get("labels") or {}
        model = self.eval_model
        classes = list(range(1, num_classes(model)))
        totals = torch.zeros(len(classes) + 1, dtype=torch.float64)
        for _, hr, label in volumes(dataset, self.cfg.val.batch_size, set(subjects)):
            pred = segment(model, hr, self.cfg.val.batch_size)
            totals += torch.cat([torch.ones(1, dtype=torch.float64), dice_per_class(pred, label, classes)])
        totals = trainer.strategy.reduce(totals.to(self.device), reduce_op="sum").cpu()
        n = max(float(totals[0]), 1.0)
        metrics = {f"val/dice_{names.get(str(c), c)}": float(v) / n for c, v in zip(classes, totals[1:])}
        metrics["val/dice"] = sum(metrics.values()) / len(metrics)
        return metrics
