"""``medsr test`` for segmentation weights: the network's label maps (:func:`medsr.inference.segment.segment`,
the path of validation) on every volume of a labelled store's split, Dice per tissue class over each whole volume
(:func:`medsr.metrics.seg.dice_per_class`; 1 when a class is absent from both maps) and their mean; volumes are
the unit: mean, sample standard deviation and 95 % t-interval over volumes
(:func:`medsr.evaluation.report.summarise`)."""

from __future__ import annotations

from typing import Any

from medsr.data.labelled import LabelledSliceDataset
from medsr.errors import InputError
from medsr.evaluation.report import summarise, summary_cell
from medsr.evaluation.testing import TestProtocol
from medsr.inference.segment import num_classes, segment
from medsr.metrics.seg import dice_per_class
from medsr.registry import PROTOCOLS


def run_segmentation_test(setup: Any, model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """Report ``{"protocol", "results": [{"class", "dice", "dice_std", "dice_ci", "n_volumes"}]}`` (one row per
    tissue class and one for their mean) of ``model`` on ``setup`` (a :class:`~.TestSetup`)."""
    target = setup.target or meta.get("contrasts", {}).get("target")
    if target is None:
        raise InputError("--target", f"{setup.weights} does not say which contrast it was trained on; give --target")
    dataset = LabelledSliceDataset(setup.data, setup.split, target)
    net = model.to(setup.device)
    classes = list(range(1, num_classes(net)))
    names = [str(dataset.label_names.get(str(c), c)) for c in classes]
    per_volume = [dice_per_class(segment(net, image, setup.batch_size), label, classes).tolist()
                  for _, image, label in dataset.volumes()]
    rows = [(name, [v[i] for v in per_volume]) for i, name in enumerate(names)]
    rows.append(("mean over classes", [sum(v) / len(v) for v in per_volume]))
    results = []
    for name, values in rows:
        s = summarise(values)
        results.append({"class": name, "dice": s.mean, "dice_std": s.std, "dice_ci": (s.ci95_low, s.ci95_high),
                        "n_volumes": len(values)})
    protocol = {"task": "segmentation", "weights": str(setup.weights), "data": str(setup.data),
                "split": setup.split, "target": target, "volumes": len(per_volume),
                "metric": "Dice 2|P∩G|/(|P|+|G|) per class over each whole volume (1 when absent from both), "
                          "labels = argmax of the logits, whole slices",
                "statistics": "mean ± sample std [95% t-interval] over volumes"}
    return {"protocol": protocol, "results": results}


def segmentation_table(report: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of a :func:`run_segmentation_test` report."""
    return ["class", "Dice ± sd [95% CI]", "volumes"], [[r["class"], summary_cell(r, "dice", 4), r["n_volumes"]]
                                                          for r in report["results"]]


PROTOCOLS.register("segmentation")(TestProtocol(run_segmentation_test, segmentation_table, "segmentation",
                                                options=("target",)))
