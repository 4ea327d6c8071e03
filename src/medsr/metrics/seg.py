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
from scipy import ndimage


def _overlap(pred: np.ndarray, gt: np.ndarray, label: int) -> tuple[int, int, int]:
    p, g = pred == label, gt == label
    inter = int(np.count_nonzero(p & g))
    return inter, int(np.count_nonzero(p)), int(np.count_nonzero(g))


def dice(pred: np.ndarray, gt: np.ndarray, classes: Iterable[int], empty_score: float = 1.0) -> dict[int, float]:
    """Dice ``2 |P ∩ G| / (|P| + |G|)`` per class; ``empty_score`` where the class is absent from both maps."""
    scores = {}
    for c in classes:
        inter, n_pred, n_gt = _overlap(pred, gt, c)
        scores[c] = 2 * inter / (n_pred + n_gt) if n_pred + n_gt else float(empty_score)
    return scores


def iou(pred: np.ndarray, gt: np.ndarray, classes: Iterable[int], empty_score: float = 1.0) -> dict[int, float]:
    """Intersection over union ``|P ∩ G| / |P ∪ G|`` per class; ``empty_score`` where absent from both maps."""
    scores = {}
    for c in classes:
        inter, n_pred, n_gt = _overlap(pred, gt, c)
        union = n_pred + n_gt - inter
        scores[c] = inter / union if union else float(empty_score)
    return scores


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


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)`` of ``scores`` against binary ``labels``, one point per distinct score
    (descending thresholds, predicted positive where ``score >= threshold``), starting at (0, 0)."""
    scores, labels = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(labels, bool).ravel()
    n_pos, n_neg = int(labels.sum()), int(labels.size - labels.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the ROC curve needs both positive and negative pixels")
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(labels)[last_of_run]
    fps = (last_of_run + 1) - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, scores[last_of_run]]


def auc(fpr: Sequence[float], tpr: Sequence[float]) -> float:
    """Area under a curve by the trapezoidal rule."""
    x, y = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1])) / 2)
