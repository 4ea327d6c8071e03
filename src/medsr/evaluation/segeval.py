"""Evaluate matched segmentation files (``medsr segeval``): Dice/IoU per class, Pd/Fa, ROC/AUC.

Predictions are label maps (integer values) or foreground probability maps (float values that are not all
integers), thresholded for Dice, IoU and Pd/Fa and used as scores for the ROC curve. References are label maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medsr.errors import InputError, require
from medsr.evaluation.evaluate import Evaluation
from medsr.evaluation.pairing import load, match_files
from medsr.metrics import seg

METRICS = ("dice", "iou", "pdfa", "roc")
DEFAULT_METRICS = ("dice", "iou")
_CURVE_POINTS = 1001


@dataclass
class SegOptions:
    """The knobs of ``medsr segeval``; ``classes=None`` takes every non-zero label found in the references."""

    metrics: tuple[str, ...] = DEFAULT_METRICS
    classes: tuple[int, ...] | None = None
    threshold: float = 0.5
    empty_score: float = 1.0
    distance: float = 3.0
    allow_missing: bool = False


def parse_classes(values: Sequence[str] | None) -> tuple[int, ...] | None:
    """Class labels from ``--classes 1 2`` or ``--classes 1,2``."""
    if not values:
        return None
    items = [v for text in values for v in text.split(",") if v.strip()]
    try:
        classes = tuple(dict.fromkeys(int(v) for v in items))
    except ValueError:
        raise InputError("--classes", f"expected integer labels, got {' '.join(values)}") from None
    require(bool(classes), "--classes", "no label given")
    return classes


@dataclass
class _Pair:
    key: str
    pred: np.ndarray
    probability: bool
    gt: np.ndarray


def _label_map(path: Path, reference: Path | None = None) -> tuple[np.ndarray, bool]:
    """The map of ``path`` (channel axis removed, on ``reference``'s grid) and whether it holds probabilities."""
    item = load(path, reference=reference)
    require(item.data.shape[0] == 1, path, f"expected a single-channel map, got {item.data.shape[0]} channels")
    data = item.data[0]
    probability = data.dtype.kind == "f" and not np.array_equal(data, np.round(data))
    return data, probability


def _read_pair(key: str, pred_path: Path, gt_path: Path) -> _Pair:
    pred, probability = _label_map(pred_path, gt_path)
    gt, gt_probability = _label_map(gt_path)
    require(not gt_probability, gt_path, "the reference must be a label map (integer values)")
    require(pred.shape == gt.shape, pred_path, f"shape {'x'.join(map(str, pred.shape))} differs from the reference "
                                               f"{gt_path} ({'x'.join(map(str, gt.shape))})")
    if probability:
        require(float(pred.min()) >= 0 and float(pred.max()) <= 1, pred_path,
                "probability map values must lie in [0, 1]")
    return _Pair(key, pred, probability, gt.astype(np.int64))


def _curve(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray) -> dict[str, list[float]]:
    index = np.unique(np.linspace(0, fpr.size - 1, min(fpr.size, _CURVE_POINTS)).round().astype(int))
    return {"fpr": fpr[index].tolist(), "tpr": tpr[index].tolist(), "threshold": thresholds[index].tolist()}


def _foreground(labels: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
    """Pixels of the evaluated classes (every non-zero label when none are given)."""
    return np.isin(labels, classes) if classes else labels != 0


class _Accumulator:
    """Per-file records plus the data-set-level Pd/Fa counts and ROC score counts."""

    def __init__(self, options: SegOptions):
        self.options = options
        self.records: list[dict[str, Any]] = []
        self.overlaps: list[dict[int, tuple[int, int, int]]] = []
        self.detection = seg.Detection(0, 0, 0, 0)
        self.scores: list[seg.ScoreCounts] = []
        self.probability: bool | None = None
        self.seen: set[int] = set()  # non-zero labels found in the references

    def add(self, pair: _Pair, pred_path: Path, classes: Sequence[int] | None) -> None:
        opts = self.options
        if self.probability is not None and self.probability != pair.probability:
            raise InputError(pred_path, "predictions mix probability maps and label maps")
        self.probability = pair.probability
        gt_labels = set(np.unique(pair.gt).tolist()) - {0}
        self.seen |= gt_labels
        gt_fg = _foreground(pair.gt, classes)
        if pair.probability:
            pred_fg = pair.pred >= opts.threshold
            self.overlaps.append(seg.overlap_counts(pred_fg.astype(np.int64), gt_fg.astype(np.int64), [1]))
        else:
            pred_fg = _foreground(pair.pred, classes)
            counted = classes or sorted((gt_labels | set(np.unique(pair.pred).tolist())) - {0})
            self.overlaps.append(seg.overlap_counts(pair.pred, pair.gt, counted))
        record: dict[str, Any] = {"file": pair.key}
        notes = []
        if "pdfa" in opts.metrics:
            found = seg.detect(pred_fg, gt_fg, opts.distance)
            self.detection += found
            record["pd"] = found.detected / found.targets if found.targets else float("nan")
            record["fa"] = found.fa
            notes += [] if found.targets else ["no target"]
        if "roc" in opts.metrics:
            counts = seg.score_counts(pair.pred if pair.probability else pred_fg, gt_fg)
            self.scores.append(counts)
            both = counts[1].sum() > 0 and counts[2].sum() > 0
            record["auc"] = seg.auc(*seg.roc_from_counts(counts)[:2]) if both else float("nan")
            notes += [] if both else ["auc n/a: one class only"]
        record["note"] = "; ".join(notes)
        self.records.append(record)

    def finish(self, classes: Sequence[int]) -> list[str]:
        """Fill in Dice/IoU for ``classes`` and return the metric columns."""
        opts = self.options
        columns: list[str] = []
        for name, score in (("dice", seg.dice_from_counts), ("iou", seg.iou_from_counts)):
            if name not in opts.metrics:
                continue
            columns.append(name)
            if len(classes) > 1:
                columns += [f"{name}_{c}" for c in classes]
            for record, counts in zip(self.records, self.overlaps):
                per_class = {c: score(*counts.get(c, (0, 0, 0)), opts.empty_score) for c in classes}
                record[name] = float(np.mean(list(per_class.values())))
                if len(classes) > 1:
                    record.update({f"{name}_{c}": v for c, v in per_class.items()})
        return columns + [m for m in ("pd", "fa", "auc") if self.records and m in self.records[0]]

    def pooled(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "pdfa" in self.options.metrics:
            d = self.detection
            out["Pd (pooled)"] = f"{d.pd:.6g} ({d.detected} of {d.targets} targets)"
            out["Fa (pooled)"] = f"{d.fa:.6g} ({d.false_pixels} of {d.pixels} pixels)"
        if "roc" in self.options.metrics:
            counts = seg.merge_counts(self.scores)
            if counts[1].sum() and counts[2].sum():
                fpr, tpr, thresholds = seg.roc_from_counts(counts)
                out["AUC (pooled)"] = seg.auc(fpr, tpr)
                out["roc"] = _curve(fpr, tpr, thresholds)
            else:
                out["AUC (pooled)"] = "n/a: the references hold only one class"
        return out


def _protocol(pred: Path, gt: Path, n_pairs: int, classes: Sequence[int], given: bool, acc: _Accumulator
              ) -> dict[str, Any]:
    opts = acc.options
    protocol: dict[str, Any] = {"prediction": str(pred), "reference": str(gt), "pairs": n_pairs,
                                "metrics": list(opts.metrics),
                                "classes": f"{', '.join(map(str, classes))} "
                                           f"({'given' if given else 'non-zero labels of the references'})"}
    if {"dice", "iou"} & set(opts.metrics):
        protocol["empty class"] = f"scores {opts.empty_score:g} when absent from both maps; mean over classes"
    if acc.probability:
        protocol["probability maps"] = (f"foreground where p >= {opts.threshold:g}; Dice/IoU of that foreground "
                                        "against the classes' union")
    if "pdfa" in opts.metrics:
        protocol["pd/fa"] = (f"targets = 8-connected foreground components; detected when a predicted component's "
                             f"centroid lies within {opts.distance:g} px (nearest, one to one); Fa = unmatched "
                             "predicted pixels / all pixels; pooled over the data set")
    if "roc" in opts.metrics:
        protocol["roc"] = "pixel level, foreground of the classes vs the rest; label maps score 0/1"
    return protocol


def segment_evaluate(pred: Path, gt: Path, options: SegOptions) -> Evaluation:
    """Match ``pred`` with ``gt`` and compute the segmentation metrics per file and pooled over the data set."""
    require(0 <= options.threshold <= 1, "--threshold", f"must lie in [0, 1], got {options.threshold}")
    require(options.distance >= 0, "--distance", f"must be >= 0, got {options.distance}")
    matching = match_files(Path(pred), Path(gt), options.allow_missing)
    acc = _Accumulator(options)
    for key, pred_path, gt_path in matching.pairs:
        acc.add(_read_pair(key, pred_path, gt_path), pred_path, options.classes)
    classes = list(options.classes or sorted(acc.seen))
    require(bool(classes), gt, "the references hold no non-zero label; give --classes")
    metrics = acc.finish([1] if acc.probability else classes)
    protocol = _protocol(Path(pred), Path(gt), len(matching.pairs), classes, options.classes is not None, acc)
    return Evaluation(protocol, metrics, acc.records, ["file"], ["note"],
                      matching.unmatched_lines(str(pred), str(gt)), acc.pooled())
