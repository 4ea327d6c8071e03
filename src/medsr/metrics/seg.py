"""Segmentation and detection metrics on numpy label maps and probability maps.

Dice and IoU per class (an empty class in both maps scores ``empty_score``, 1 by default, never NaN);
target-level probability of detection Pd and false-alarm rate Fa for small targets, as in the infrared
small-target literature (e.g. Dai et al. 2021, "Asymmetric Contextual Modulation for Infrared Small Target
Detection"; Li et al. 2022, "Dense Nested Attention Network for Infrared Small Target Detection"); ROC curve and
AUC from probability maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
from scipy import ndimage


def overlap_counts(pred: np.ndarray, gt: np.ndarray, classes: Iterable[int]) -> dict[int, tuple[int, int, int]]:
    """Per class ``(|P ∩ G|, |P|, |G|)`` of label maps ``pred`` and ``gt``."""
    counts = {}
    for c in classes:
        p, g = pred == c, gt == c
        counts[c] = (int(np.count_nonzero(p & g)), int(np.count_nonzero(p)), int(np.count_nonzero(g)))
    return counts


def dice_from_counts(inter: int, n_pred: int, n_gt: int, empty_score: float = 1.0) -> float:
    """Dice ``2 |P ∩ G| / (|P| + |G|)``; ``empty_score`` when the class is absent from both maps."""
    return 2 * inter / (n_pred + n_gt) if n_pred + n_gt else float(empty_score)


def iou_from_counts(inter: int, n_pred: int, n_gt: int, empty_score: float = 1.0) -> float:
    """Intersection over union ``|P ∩ G| / |P ∪ G|``; ``empty_score`` when the class is absent from both maps."""
    union = n_pred + n_gt - inter
    return inter / union if union else float(empty_score)


def dice(pred: np.ndarray, gt: np.ndarray, classes: Iterable[int], empty_score: float = 1.0) -> dict[int, float]:
    """Dice per class of label maps ``pred`` and ``gt``."""
    return {c: dice_from_counts(*n, empty_score) for c, n in overlap_counts(pred, gt, classes).items()}


def dice_per_class(pred: torch.Tensor, gt: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """:func:`dice` of label tensors over a whole volume (1 when a class is absent from both), float64 in the order
    of ``classes``."""
    scores = dice(pred.cpu().numpy(), gt.cpu().numpy(), classes)
    return torch.tensor([scores[c] for c in classes], dtype=torch.float64)


def iou(pred: np.ndarray, gt: np.ndarray, classes: Iterable[int], empty_score: float = 1.0) -> dict[int, float]:
    """IoU per class of label maps ``pred`` and ``gt``."""
    return {c: iou_from_counts(*n, empty_score) for c, n in overlap_counts(pred, gt, classes).items()}


@dataclass(frozen=True)
class Detection:
    """Target-level detection counts of one image (add them up over a data set before dividing)."""

    targets: int
    detected: int
    false_pixels: int
    pixels: int

    def __add__(self, other: "Detection") -> "Detection":
        return Detection(self.targets + other.targets, self.detected + other.detected,
                         self.false_pixels + other.false_pixels, self.pixels + other.pixels)

    @property
    def pd(self) -> float:
        """Detected targets / true targets (1 when there is no target, nothing to miss)."""
        return self.detected / self.targets if self.targets else 1.0

    @property
    def fa(self) -> float:
        """Falsely detected pixels / all pixels."""
        return self.false_pixels / self.pixels if self.pixels else 0.0


def _components(mask: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Labels, centroids and pixel counts of the 8-connected (full connectivity) components of ``mask``."""
    labels, n = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    index = np.arange(1, n + 1)
    centroids = [np.asarray(c, dtype=float) for c in ndimage.center_of_mass(mask, labels, index)] if n else []
    return labels, centroids, np.bincount(labels.ravel(), minlength=n + 1)[1:]


def detect(pred: np.ndarray, gt: np.ndarray, distance: float = 3.0) -> Detection:
    """Pd/Fa counts of binary ``pred`` against binary ``gt``.

    A true target (connected component of ``gt``) is detected when an unmatched predicted component has its
    centroid within ``distance`` pixels of the target's centroid (the nearest one is matched, one to one); the
    pixels of predicted components that match no target are false alarms.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {gt.shape}")
    _, pred_centres, pred_sizes = _components(pred)
    _, gt_centres, _ = _components(gt)
    free = list(range(len(pred_centres)))
    detected = 0
    for centre in gt_centres:
        dists = [float(np.linalg.norm(pred_centres[j] - centre)) for j in free]
        if dists and min(dists) <= distance:
            free.pop(int(np.argmin(dists)))
            detected += 1
    false_pixels = int(sum(pred_sizes[j] for j in free))
    return Detection(len(gt_centres), detected, false_pixels, int(gt.size))


ScoreCounts = tuple[np.ndarray, np.ndarray, np.ndarray]


def score_counts(scores: np.ndarray, labels: np.ndarray) -> ScoreCounts:
    """Distinct ``scores`` (ascending) with the number of positive and negative ``labels`` at each."""
    values, inverse = np.unique(np.asarray(scores, dtype=np.float64).ravel(), return_inverse=True)
    total = np.bincount(inverse, minlength=values.size)
    positives = np.bincount(inverse, weights=np.asarray(labels, bool).ravel(), minlength=values.size)
    return values, positives.astype(np.int64), total - positives.astype(np.int64)


def merge_counts(parts: Sequence[ScoreCounts]) -> ScoreCounts:
    """Pool the score counts of several images."""
    values, inverse = np.unique(np.concatenate([p[0] for p in parts]), return_inverse=True)
    pos = np.bincount(inverse, weights=np.concatenate([p[1] for p in parts]), minlength=values.size)
    neg = np.bincount(inverse, weights=np.concatenate([p[2] for p in parts]), minlength=values.size)
    return values, pos.astype(np.int64), neg.astype(np.int64)


def roc_from_counts(counts: ScoreCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)``: one point per distinct score, thresholds descending (positive where
    ``score >= threshold``), starting at (0, 0) with threshold +inf."""
    values, pos, neg = counts
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the ROC curve needs both positive and negative pixels")
    tps, fps = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos], np.r_[np.inf, values[::-1]]


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of ``scores`` against binary ``labels`` (see :func:`roc_from_counts`)."""
    return roc_from_counts(score_counts(scores, labels))


def auc(fpr: Sequence[float], tpr: Sequence[float]) -> float:
    """Area under a curve by the trapezoidal rule."""
    x, y = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2)
