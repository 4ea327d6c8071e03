"""``medsr evaluate PRED GT``: PSNR, SSIM, NRMSE/NMSE and LPIPS over matched files, with the protocol stated."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """Compare predictions with references. PRED and GT are two files or two directories whose files are
matched by relative path without extension (png, jpg, tif, npy, mat, h5, nii, nii.gz). Prints the protocol
(data-range rule and values, SSIM window, mask, crop), a per-file table, mean ± std and a 95%% confidence
interval per metric. Data range: N, gt-range, gt-max or dtype; default: the dtype's range for integer images,
gt-range for float images (gt-max with --ssim-preset fastmri). Volumes are evaluated per volume (SSIM = mean over
the slices along the last array axis; with a CT window every metric per slice, then the mean over slices, unless
--ct-reduction volume) or, with --per-slice, per slice."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="full-reference image metrics over matched files",
                                   description=DESCRIPTION)
    add_pair_arguments(parser, "psnr,ssim,nrmse", "psnr,ssim,nrmse,nmse,lpips")
    parser.add_argument("--data-range", metavar="RULE", help="N | gt-range | gt-max | dtype")
    parser.add_argument("--ssim-preset", choices=["wang", "fastmri", "skimage"],
                        help="default: the CT window's (skimage for the ldctbench presets), else wang")
    parser.add_argument("--mask", type=Path, metavar="DIR_OR_FILE", help="foreground mask(s), non-zero = inside")
    parser.add_argument("--crop-border", type=int, default=0, metavar="N", help="pixels removed from each side")
    parser.add_argument("--per-slice", action="store_true", help="one row per slice of each volume")
    parser.add_argument("--gray", action="store_true", help="evaluate RGB images on BT.601 luma")
    parser.add_argument("--lpips-weights", type=Path, metavar="PATH", help="local LPIPS weights (.pth)")
    parser.add_argument("--ct-window", metavar="C,W", help="CT images in HU: clip to the window of centre C and "
                        "width W before the metrics; data range = W")
    parser.add_argument("--ct-preset", metavar="NAME", help="a published CT protocol: redcnn, dugan, corediff "
                        "(clipped HU), ldctbench-chest, ldctbench-abdomen or ldctbench-neuro (LDCT-bench's [0, 1] "
                        "windowing, data range 1, scikit-image's default SSIM)")
    parser.add_argument("--ct-reduction", choices=["slice", "volume"], default="slice", help="CT windows: mean "
                        "of per-slice scores (default, as the CT papers) or one PSNR per volume")
    add_report_arguments(parser)
    parser.set_defaults(func=run)


def add_pair_arguments(parser: argparse.ArgumentParser, metrics: str, known: str) -> None:
    """PRED and GT (files, or directories matched by name) and ``--metrics``, shared with ``segeval``."""
    parser.add_argument("pred", type=Path, help="prediction file or directory")
    parser.add_argument("gt", type=Path, help="reference file or directory")
    parser.add_argument("--metrics", default=metrics, help=f"comma-separated, from {known} (default: {metrics})")


def add_report_arguments(parser: argparse.ArgumentParser, csv: bool = True) -> None:
    """``--json``, ``--csv`` and ``--allow-missing``, shared by ``evaluate``, ``segeval`` and ``clip-score``."""
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the full report as JSON")
    if csv:
        parser.add_argument("--csv", type=Path, metavar="FILE", help="write the per-file table as CSV")
    parser.add_argument("--allow-missing", action="store_true", help="use the matched pairs even if some are not")


def check_reports(args: argparse.Namespace, inputs: list[Path | None]) -> None:
    """``--json``/``--csv`` must be writable files other than the inputs and each other (checked before any
    work)."""
    from medsr.io.atomic import check_output

    json_out, csv_out = args.json, getattr(args, "csv", None)
    if json_out is not None:
        check_output(json_out, inputs)
    if csv_out is not None:
        check_output(csv_out, [*inputs, json_out])


def run(args: argparse.Namespace) -> int:
    from medsr.metrics.ct import parse_ct_window
    from medsr.evaluation.evaluate import DEFAULT_METRICS, METRICS, EvalOptions, evaluate, parse_metrics

    check_reports(args, [args.pred, args.gt, args.mask, args.lpips_weights])
    options = EvalOptions(parse_metrics(args.metrics, METRICS, DEFAULT_METRICS), args.data_range, args.ssim_preset,
                          args.mask, args.crop_border, args.per_slice, args.gray, args.lpips_weights,
                          args.allow_missing, parse_ct_window(args.ct_window, args.ct_preset), args.ct_reduction)
    result = evaluate(args.pred, args.gt, options)
    print(result.text())
    result.write(args.json, args.csv)
    return 0
