"""``medsr denoise INPUT OUTPUT``: denoise a whole CT volume (NIfTI or DICOM series, HU)."""

from __future__ import annotations

import argparse
import sys

from medsr.commands import add_inference_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "denoise",
        help="denoise a low-dose CT volume (NIfTI or DICOM series in HU) into NIfTI or a DICOM series",
        description="Denoise every axial slice of a CT volume in HU with a 2-D denoiser (default: the shipped "
        "DnCNN weights, trained on a real abdomen CT at a simulated quarter dose; --method nlm or bm3d: a classical filter, non-local means or a BM3D-style filter for "
        "correlated noise, whose noise power spectrum is estimated from the volume's flat soft tissue unless --psd "
        "gives it). Output: a float32 NIfTI in HU with the input's header and affine (OUTPUT ends in .nii or "
        ".nii.gz), or, for a DICOM series input, a new DICOM series in the folder OUTPUT with the input's tags and "
        "geometry.",
    )
    parser.add_argument("input", help="NIfTI file (.nii, .nii.gz) in HU, or a directory holding one DICOM series")
    parser.add_argument("output", help="output NIfTI file, or a new folder for a DICOM series")
    parser.add_argument("--method", default="weights", choices=("weights", "nlm", "bm3d"),
                        help="weights: the network of --weights (default); nlm: non-local means (patch 7, search 21, "
                        "h from the noise level); bm3d: BM3D-style collaborative filter for colored noise (both "
                        "on the CPU, whole slices: --device, --batch-size and --tile are for weights)")
    parser.add_argument("--psd", metavar="FILE", help="noise power spectrum for --method nlm/bm3d: a square .npy "
                        "array in HU^2 (medsr.classical.noise convention); default: estimated from the input")
    parser.add_argument("--no-self-test", dest="self_test", action="store_false",
                        help="skip the method-noise check (by default the removed residual, input minus output, is "
                        "checked to look like noise: no correlation with the image's edges, no more low-frequency "
                        "power than the input's noise; a failure is a warning)")
    parser.add_argument("--strict", action="store_true", help="exit 2 without writing when the method-noise check "
                        "fails or cannot run")
    add_inference_options(parser, "denoise weights file or run folder (default: the shipped dncnn_ct.pth)", "slice", 4)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from medsr.infer.denoise import denoise_file
    from medsr.io.atomic import check_output

    check_output(args.output, [args.input, args.weights, args.psd],
                 folder=not args.output.endswith((".nii", ".nii.gz")))
    report = denoise_file(args.input, args.output, method=args.method, weights=args.weights, psd=args.psd,
                          device=args.device, batch_size=args.batch_size, tile=args.tile, self_test=args.self_test,
                          strict=args.strict)
    for note in report.notes:
        print(f"note: {note}")
    for warning in report.warnings:
        print(f"medsr: warning: {warning}", file=sys.stderr)
    shape = "x".join(map(str, report.shape))
    print(f"wrote {report.output}: {shape} voxels in HU ({report.kind}, {report.model})")
    return 0
