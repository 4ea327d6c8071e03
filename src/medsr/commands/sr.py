"""``medsr sr INPUT OUTPUT``: whole-volume super-resolution of a NIfTI file or DICOM series directory."""

from __future__ import annotations

import argparse
import sys

from medsr.commands import add_inference_options, add_mask_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sr",
        help="super-resolve a NIfTI volume (or DICOM series directory) into a NIfTI file",
        description="Super-resolve a 3-D volume in-plane (X, Y = array axes 0, 1) and/or through-plane (Z = axis 2, "
        "by fusing passes over the two orthogonal planes). Outputs float32 in the input's units with an affine "
        "that keeps the field of view.",
    )
    parser.add_argument("input", help="NIfTI file (.nii, .nii.gz) or a directory holding one DICOM series")
    parser.add_argument("output", help="output NIfTI file")
    parser.add_argument("--scale", help="scale per voxel axis: S or SX,SY,SZ (e.g. 2,2,1 for in-plane x2)")
    parser.add_argument("--voxel-size", help="target voxel size in mm: V or X,Y,Z (e.g. 1,1,1 for isotropic)")
    parser.add_argument("--ref", help="reference volume (another contrast), resampled onto the output grid")
    parser.add_argument("--method", metavar="NAME", help="a training-free reference-guided method instead of weights: "
                        "guided (guided filter, measured k-space band kept) or dtv (directional total variation "
                        "with the reference's edges, measured band kept); needs --ref")
    add_inference_options(parser, "weights file (default: the shipped sakg weights, when installed)", "plane", 8)
    parser.add_argument("--tta", action="store_true", help="average over four flips (test-time augmentation)")
    parser.add_argument("--no-self-test", dest="self_test", action="store_false",
                        help="skip the self-test (by default the input is degraded once more by the requested "
                        "factor, super-resolved back and compared with zero-filling or cubic interpolation)")
    parser.add_argument("--strict", action="store_true", help="exit 2 without writing when the model loses the "
                        "self-test or the input looks interpolated (its outer k-space band empty: no test possible)")
    parser.add_argument("--adapt", action="store_true", help="fine-tune a copy of the weights on this volume first "
                        "(in-plane: zero-shot SR pairs; through-plane: SMORE pairs), holding out blocks of slices on "
                        "which the self-test scores both weights; the better is kept")
    parser.add_argument("--adapt-minutes", metavar="M", help="time limit of --adapt (default: 2)")
    parser.add_argument("--save-adapted", metavar="FILE", help="write the adapted weights to FILE (only when they "
                        "are kept, i.e. beat the original weights on the held-out slices)")
    parser.add_argument("--slice-thickness", metavar="MM", help="slice thickness of the input for through-plane "
                        "self-test and adaptation (default: the Z spacing, no gap)")
    parser.add_argument("--profile", metavar="KIND", help="slice profile of the input: gaussian (default) or rect")
    add_mask_options(parser, "the input is undersampled: random, equispaced, t2net or file (checked against the "
                     "degradation the weights were trained for)")
    parser.add_argument("--force", action="store_true", help="run weights trained for another sampling anyway")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medsr.data.masks import parse_mask
    from medsr.infer.super_resolve import super_resolve_file
    from medsr.infer.guard import parse_safeguards
    from medsr.io.atomic import check_output

    inputs = [args.input, args.ref, args.weights, args.mask_file]
    check_output(args.output, inputs)
    sampling = parse_mask(args.mask, args.acceleration, args.center_fraction, args.mask_grid, args.mask_file)
    guards = parse_safeguards(self_test=args.self_test, strict=args.strict, adapt=args.adapt,
                              adapt_minutes=args.adapt_minutes, save_adapted=args.save_adapted,
                              slice_thickness=args.slice_thickness, profile=args.profile)
    if guards.save_adapted is not None:
        check_output(guards.save_adapted, [*inputs, args.output])
    report = super_resolve_file(
        args.input, args.output, scale=args.scale, voxel_size=args.voxel_size, ref=args.ref, weights=args.weights,
        device=args.device, batch_size=args.batch_size, tile=args.tile, tta=args.tta, guards=guards,
        sampling=sampling, force=args.force, method=args.method,
    )
    for note in report.notes:
        print(f"note: {note}")
    for warning in report.warnings:
        print(f"medsr: warning: {warning}", file=sys.stderr)
    shape = "x".join(map(str, report.out_shape))
    voxel = "x".join(f"{v:.4g}" for v in report.out_voxel)
    print(f"wrote {report.output}: {shape} voxels of {voxel} mm (input {'x'.join(map(str, report.in_shape))})")
    return 0
