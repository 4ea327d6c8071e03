"""``medsr segeval PRED GT``: Dice, IoU, Pd/Fa and ROC/AUC over matched segmentation files."""

from __future__ import annotations

import argparse

from medsr.commands.evaluate import add_pair_arguments, add_report_arguments

DESCRIPTION = """Compare predicted label maps or foreground probability maps with reference label maps, matched
by relative path without extension like medsr evaluate. Dice and IoU per class and their mean (a class absent
from both maps scores --empty-score), target-level Pd/Fa (small targets: connected components matched by centroid
distance), ROC curve and AUC (pixel level). Prints the protocol, a per-file table, mean ± std with a 95%%
confidence interval, and the data-set-level (pooled) Pd, Fa and AUC."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("segeval", help="segmentation and detection metrics over matched files",
                                   description=DESCRIPTION)
    add_pair_arguments(parser, "dice,iou", "dice,iou,pdfa,roc")
    parser.add_argument("--classes", nargs="+", metavar="C", help="labels to evaluate (default: all non-zero)")
    parser.add_argument("--threshold", type=float, default=0.5, help="foreground where probability >= this")
    parser.add_argument("--empty-score", type=float, default=1.0, help="Dice/IoU of a class absent from both")
    parser.add_argument("--distance", type=float, default=3.0, help="Pd: centroid distance threshold in pixels")
    add_report_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medsr.commands.evaluate import check_reports
    from medsr.errors import InputError
    from medsr.evaluation.evaluate import parse_metrics
    from medsr.evaluation.segeval import DEFAULT_METRICS, METRICS, SegOptions, parse_classes, segment_evaluate

    check_reports(args, [args.pred, args.gt])
    if not 0.0 <= args.empty_score <= 1.0:
        raise InputError("--empty-score", f"must be between 0 and 1, got {args.empty_score:g}")

    options = SegOptions(parse_metrics(args.metrics, METRICS, DEFAULT_METRICS), parse_classes(args.classes),
                         args.threshold, args.empty_score, args.distance, args.allow_missing)
    result = segment_evaluate(args.pred, args.gt, options)
    print(result.text())
    result.write(args.json, args.csv)
    return 0
