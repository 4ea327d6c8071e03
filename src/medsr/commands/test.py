"""``medsr test RUN_DIR_OR_WEIGHTS --data DIR [--scales ...] [--ref hr|lr|none] [--json F]``: the test protocol
registered in ``PROTOCOLS`` under the weights' task: PSNR/SSIM per scale (SR weights), per scale and acceleration
(reconstruction, joint), per CT window (denoise weights on a CT pair store), Dice per class (segmentation weights),
or a plugin task's own."""

from __future__ import annotations

import argparse

DEFAULT_SCALES = "1.5,2,2.5,3,4,6,8"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "test",
        help="test a trained model on whole volumes of a prepared store, with its baselines",
        description="PSNR/SSIM (mean ± sd [95% t-interval] over volumes) on a split of a prepared store, with the "
        "protocol header: SR "
        "weights per scale beside bicubic and zero-filling (scales outside the trained range marked OOD), "
        "reconstruction/joint weights per scale and acceleration beside zero-filling, CT denoising weights per "
        "window beside the low-dose input (a CT pair store: medsr prepare ct, ldct or ctvol), segmentation "
        "weights as Dice per class (a store with labels).",
    )
    parser.add_argument("weights", help="run directory (uses its weights.pth) or weights file")
    parser.add_argument("--data", required=True, help="prepared store (e.g. data/mni; a CT pair store for denoise weights)")
    parser.add_argument("--scales", help=f"comma-separated scales (default {DEFAULT_SCALES} and the model's fixed "
                        "scales, e.g. x1 for reconstruction weights)")
    parser.add_argument("--ref", choices=("hr", "lr", "none"), default="hr", help="reference mode (default hr)")
    parser.add_argument("--ref-scale", type=float, help="scale of an LR reference (default: the target's scale)")
    parser.add_argument("--split", default="test", help="split to test (default test)")
    parser.add_argument("--target", help="target contrast (default: the one the weights were trained on)")
    parser.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                        help="also test the baselines: bicubic and zero-filling, or the low-dose input (default on)")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--json", help="also write the results as JSON here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medsr.device import resolve_device
    from medsr.evaluation.testing import TestSetup, default_scales, parse_scales
    from medsr.errors import InputError
    from medsr.kspace import check_scale
    from medsr.evaluation.report import format_table, protocol_header, write_json

    if args.ref_scale is not None:
        try:
            check_scale(args.ref_scale, "--ref-scale")
        except ValueError as err:
            raise InputError("--ref-scale", str(err)) from None
    if args.json:
        from medsr.io.atomic import check_output

        check_output(args.json, [args.weights, args.data])
    if args.batch_size < 1:
        raise InputError("--batch-size", "must be at least 1")
    device = str(resolve_device(args.device))
    scales = parse_scales(args.scales) if args.scales is not None else None
    from medsr.checkpoint import build_from_weights, weights_path
    from medsr.registry import PROTOCOLS

    model, meta = build_from_weights(weights_path(args.weights))
    task = meta.get("task", "sr")
    if task not in PROTOCOLS:
        raise InputError(args.weights, f"holds weights of task {task!r}, for which no medsr test protocol is "
                         f"installed (known: {', '.join(PROTOCOLS.names())})")
    protocol = PROTOCOLS.get(task)
    given = {"scales": args.scales is not None, "ref": args.ref != "hr", "target": args.target is not None}
    unused = [f"--{name}" for name, set_ in given.items() if set_ and name not in protocol.options]
    if unused:
        flags = unused[0] if len(unused) == 1 else ", ".join(unused[:-1]) + " and " + unused[-1]
        raise InputError(args.weights, f"is {protocol.label} weights: {flags} do{'es' if len(unused) == 1 else ''} "
                         "not apply")
    if scales is None:
        scales = default_scales(model, parse_scales(DEFAULT_SCALES))
    setup = TestSetup(Path(args.weights), Path(args.data), scales, args.ref, args.ref_scale,
                      args.split, args.target, args.baselines, args.batch_size, device)
    report = protocol.run(setup, model, meta)
    print(protocol_header(report["protocol"]))
    print()
    print(format_table(*protocol.table(report)))
    if args.json:
        write_json(args.json, report)
        print(f"\nJSON: {args.json}")
    return 0
