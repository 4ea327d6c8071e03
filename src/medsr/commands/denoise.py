"""``medsr denoise INPUT OUTPUT``: denoise a whole CT volume (NIfTI or DICOM series, HU)."""

from __future__ import annotations

import argparse

from medsr.commands import add_inference_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "denoise",
        help="denoise a low-dose CT volume (NIfTI or DICOM series in HU) into NIfTI or a DICOM series",
        description="Denoise every axial slice of a CT volume in HU with a 2-D denoiser (default: the shipped "
        "CNCL-lite weights). Output: a float32 NIfTI in HU with the input's header and affine (OUTPUT ends in .nii or "
        ".nii.gz), or, for a DICOM series input, a new DICOM series in the folder OUTPUT with the input's tags and "
        "geometry.",
    )
    parser.add_argument("input", help="NIfTI file (.nii, .nii.gz) in HU, or a directory holding one DICOM series")
    parser.add_argument("output", help="output NIfTI file, or a new folder for a DICOM series")
    add_inference_options(parser, "denoise weights file or run folder (default: the shipped cncl_ct.pth)", "slice", 4)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medsr.infer.denoise import denoise_file
    from medsr.io.atomic import check_output

    check_output(args.output, [args.input, args.weights], folder=not args.output.endswith((".nii", ".nii.gz")))
    report = denoise_file(args.input, args.output, weights=args.weights, device=args.device,
                          batch_size=args.batch_size, tile=args.tile)
    shape = "x".join(map(str, report.shape))
    print(f"wrote {report.output}: {shape} voxels in HU ({report.kind}, {report.model})")
    return 0
