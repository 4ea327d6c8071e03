"""``medsr viz``: comparison grids, PSNR/SSIM-versus-scale plots, feature maps and training samples as PNG (or PDF)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("viz", help="figures: comparisons, metric-versus-scale plots, feature maps")
    sub = parser.add_subparsers(dest="figure", metavar="FIGURE", required=True)

    compare = sub.add_parser("compare", help="LR, bicubic, methods and HR with error maps and a zoomed inset")
    compare.add_argument("--hr", required=True, help="HR image or volume")
    compare.add_argument("--out", required=True, help="output .png or .pdf")
    compare.add_argument("--lr", help="LR image or volume (shown, and upsampled bicubically as a baseline)")
    compare.add_argument("--method", action="append", default=[], metavar="NAME=FILE", help="a method's output "
                         "(repeatable, shown in order)")
    compare.add_argument("--zoom", help="inset box y,x,size in HR pixels (default: the most detailed square)")
    compare.add_argument("--slice", type=int, help="slice of the HR volume's last axis (default: middle)")
    compare.set_defaults(func=run_compare)

    scales = sub.add_parser("scales", help="PSNR and SSIM versus scale from `medsr test` JSON files")
    scales.add_argument("json", nargs="+", help="results JSON files")
    scales.add_argument("--out", required=True, help="output .png or .pdf")
    scales.set_defaults(func=run_scales)

    features = sub.add_parser("features", help="feature maps of a named layer of a model")
    features.add_argument("--weights", required=True, help="weights file")
    features.add_argument("--image", required=True, help="LR input image (or volume: its middle slice)")
    features.add_argument("--layer", required=True, help="module name, as in model.named_modules()")
    features.add_argument("--out", required=True, help="output .png or .pdf")
    features.set_defaults(func=run_features)

    samples = sub.add_parser("samples", help="a grid of a config's training items: target, reference, LR, labels")
    samples.add_argument("config", help="run config (YAML)")
    samples.add_argument("--n", type=int, default=8, help="number of items (default 8)")
    samples.add_argument("--out", required=True, help="output .png or .pdf")
    samples.set_defaults(func=run_samples)


def _check_out(args: argparse.Namespace, *inputs: object) -> None:
    from medsr.io.atomic import check_output

    check_output(args.out, inputs)


def _done(path: object) -> int:
    print(f"wrote {path}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from medsr.viz import compare_files, parse_method, parse_zoom

    _check_out(args, args.hr, args.lr, *(text.partition("=")[2] for text in args.method))
    zoom = None if args.zoom is None else parse_zoom(args.zoom)
    methods = [parse_method(text) for text in args.method]
    return _done(compare_files(args.hr, args.out, lr=args.lr, methods=methods, zoom=zoom, slice_index=args.slice))


def run_scales(args: argparse.Namespace) -> int:
    from medsr.viz import scale_plot

    _check_out(args, *args.json)
    return _done(scale_plot(args.json, args.out))


def run_features(args: argparse.Namespace) -> int:
    from medsr.viz import feature_maps, read_picture, take_slice

    _check_out(args, args.weights, args.image)
    return _done(feature_maps(args.weights, take_slice(read_picture(args.image)), args.layer, args.out))


def run_samples(args: argparse.Namespace) -> int:
    from medsr.viz import training_samples

    _check_out(args, args.config)
    return _done(training_samples(args.config, args.n, args.out))
