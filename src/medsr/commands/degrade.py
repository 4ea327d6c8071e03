"""``medsr degrade INPUT OUTPUT``: k-space degradation of a NIfTI volume, a .npy array or a PNG/TIFF image."""

from __future__ import annotations

import argparse

from medsr.commands import add_mask_options

from medsr.errors import InputError

DESCRIPTION = """Make a low-resolution (and optionally undersampled and noisy) version of an image or volume in
k-space. Volumes are degraded plane by plane: the planes perpendicular to --axis (default: the last axis), whose
length is kept. --scale applies to both in-plane axes unless --scale-y sets the first in-plane axis (the rows of
each plane) separately; an axis of N samples keeps round(N / scale). The undersampling mask drops columns
(phase-encode lines along the second in-plane axis), is the same for every plane, and is seeded by --seed or else
by the input file name. The mask lives on the LR grid by default (--mask-grid lr: crop k-space, then mask, T2Net's
order, so --acceleration is the acceleration of the output); --mask-grid hr masks the full spectrum before the
crop (medsr's behaviour before the option existed), which leaves the output less undersampled than --acceleration
says. The effective acceleration on the output grid is printed. --mask t2net draws T2Net's column statistics
(20 centre + 18 random of 128 columns, 15 + 13 of 64); --mask-file reads a column or 2-D mask (.npy, .mat, .png,
k-space centre at index N // 2). NIfTI outputs get the affine of the new grid (same field of view, centred) and a
header description of the mask.
--slice-thickness instead simulates a thick-slice acquisition of a NIfTI volume along --axis: each new slice
integrates the volume over a slice profile (gaussian with FWHM = thickness, or rect of width = thickness), and the
slices are thickness + gap apart (mm, the voxel size from the header)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("degrade", help="degrade an image or volume in k-space", description=DESCRIPTION)
    parser.add_argument("input", help="input .nii/.nii.gz volume, .npy array or .png/.tif image")
    parser.add_argument("output", help="output file of the same kind as the input")
    parser.add_argument("--scale", metavar="S", help="scale of both in-plane axes, 1 < S <= 16 (default: 1, no crop)")
    parser.add_argument("--scale-y", metavar="SY", help="scale of the first in-plane axis (default: S)")
    add_mask_options(parser, "undersampling mask: random, equispaced, t2net (T2Net's published mask) or "
                             "t2net-random (its column counts drawn per file)")
    parser.add_argument("--phase", metavar="KIND", help="phase put on a real image before sampling: none (default; "
                        "its k-space is Hermitian, so mirrored columns are known) or smooth-random (an honest "
                        "acceleration; the output is the magnitude)")
    parser.add_argument("--noise-snr", metavar="DB", help="add complex Gaussian noise: 20 log10(rms of the clean "
                        "low-resolution image / noise std per real and imaginary part) = DB")
    parser.add_argument("--seed", metavar="N", help="seed of the mask and noise (default: from the file name)")
    parser.add_argument("--axis", metavar="AXIS", help="slice axis of 3-D inputs (default: last)")
    parser.add_argument("--slice-thickness", metavar="MM", help="simulate slices MM thick along --axis (NIfTI only; "
                        "not with the k-space options)")
    parser.add_argument("--slice-gap", metavar="MM", help="gap between simulated slices (default: 0)")
    parser.add_argument("--profile", metavar="KIND", help="slice profile: gaussian (default) or rect")
    ct = parser.add_argument_group("low-dose CT (projection-domain noise insertion; input in HU, NIfTI or a DICOM "
                                   "series directory; output NIfTI)")
    ct.add_argument("--dose", metavar="D", help="simulate a scan at this fraction of the input's dose, 0 < D <= 1. "
                    "Default: the input is a real full-dose scan and only the missing noise is inserted, (1/D - 1) "
                    "times its photon noise with the electronic-noise correction (Yu et al. 2012, Zeng et al. 2015)")
    ct.add_argument("--noise-free-input", action="store_true", default=None,
                    help="the input has no noise of its own (phantom, synthetic image): simulate the whole scan at "
                    "D x I0 instead")
    ct.add_argument("--geometry", metavar="KIND", help="parallel (default, fast) or fan (slow ray-driven projector); "
                    "both sample 0.7 mm at the isocentre with 1152 views")
    ct.add_argument("--i0", metavar="N", help="incident photons at full dose per reading of a 0.7 mm detector sample "
                    "at the isocentre in a 1152-view scan, the same dose at every pixel size (default: 1e5)")
    ct.add_argument("--electronic-noise", metavar="VAR", help="electronic noise variance in photons^2 (default: 10)")
    ct.add_argument("--filter", metavar="NAME", help="FBP filter: hann (default), ram-lak or shepp-logan")
    ct.add_argument("--calibrate-hu-noise", metavar="HU", help="set I0 so that the full-dose scan of a 30 cm "
                    "water cylinder has this noise std in HU (central ROI); checked by simulation at the target dose")
    parser.set_defaults(func=run)


CT_FLAGS = ("geometry", "i0", "electronic_noise", "filter", "calibrate_hu_noise", "noise_free_input")
KSPACE_FLAGS = ("scale", "scale_y", "mask", "mask_file", "mask_grid", "acceleration", "center_fraction", "noise_snr",
                "axis", "phase")
THICK_FLAGS = ("slice_thickness", "slice_gap", "profile")

def run_ct(args: argparse.Namespace) -> int:
    from medsr.infer.dose import degrade_file, parse_dose

    given = [f"--{name.replace('_', '-')}" for name in KSPACE_FLAGS + THICK_FLAGS if getattr(args, name) is not None]
    if given:
        raise InputError(given[0], "does not combine with --dose")
    settings = parse_dose(args.dose, args.geometry, args.i0, args.electronic_noise, args.filter,
                          args.calibrate_hu_noise, args.seed, bool(args.noise_free_input))
    parameters = degrade_file(args.input, args.output, settings)
    print(dose_line(args.output, parameters))
    if "plane_note" in parameters:
        print(f"note: {parameters['plane_note']}")
    return 0


def dose_line(output: str, parameters: dict) -> str:
    """The protocol line of ``medsr degrade --dose``."""
    mode = ("noise-free input: whole scan simulated at dose x I0" if parameters["noise_free_input"]
            else "real full-dose input: (1/d - 1) x its noise inserted")
    measured = parameters["measured_noise_hu"]
    region = ("no water-equivalent region found" if measured["added"] is None else
              f"measured in a water-equivalent region ({measured['pixels']} px): added {measured['added']:.3g} HU, "
              f"total {measured['total']:.3g} HU (input {measured['input']:.3g} HU)")
    check = parameters.get("water_noise_hu_at_dose_simulated")
    simulated = "" if check is None else f" (simulated: {check:.3g} HU)"
    return (f"{output}: dose {parameters['dose']:g} ({mode}), {parameters['geometry']} beam, I0 "
            f"{parameters['i0']:.4g} ({parameters['i0_definition']}), electronic noise "
            f"{parameters['electronic_noise']:g}, {parameters['filter']} filter, seed {parameters['seed']}; "
            f"30 cm water noise {parameters['water_noise_hu_full_dose']:.3g} HU at full dose, "
            f"{parameters['water_noise_hu_at_dose']:.3g} HU at this dose{simulated}; {region}")


def run(args: argparse.Namespace) -> int:
    from medsr.io.atomic import check_output

    check_output(args.output, [args.input, args.mask_file])
    if args.dose is not None:
        return run_ct(args)
    given = [f"--{name.replace('_', '-')}" for name in CT_FLAGS if getattr(args, name) is not None]
    if given:
        raise InputError(given[0], "needs --dose")
    from medsr.data.degrade import degrade_file, parse_degradation

    if any(getattr(args, name) is not None for name in THICK_FLAGS):
        return _thick(args)
    degradation = parse_degradation(args.scale, args.scale_y, args.mask, args.acceleration, args.center_fraction,
                                    args.noise_snr, args.seed, args.mask_grid, args.mask_file, args.phase)
    before, after, mask_line = degrade_file(args.input, args.output, degradation, axis=args.axis)
    print(f"{args.output}: {'x'.join(map(str, before))} -> {'x'.join(map(str, after))}")
    if mask_line is not None:
        print(mask_line)
    return 0


def _thick(args: argparse.Namespace) -> int:
    from medsr.data.thick import parse_thick_slices, thick_slice_file
    from medsr.errors import require

    require(args.slice_thickness is not None, "--slice-thickness", "is required with --slice-gap and --profile")
    for flag in KSPACE_FLAGS + ("seed",):
        require(flag == "axis" or getattr(args, flag) is None, f"--{flag.replace('_', '-')}",
                "cannot be combined with --slice-thickness (run medsr degrade twice)")
    spec = parse_thick_slices(args.slice_thickness, args.slice_gap, args.profile)
    before, after = thick_slice_file(args.input, args.output, spec, axis=args.axis)
    print(f"{args.output}: {'x'.join(map(str, before))} -> {'x'.join(map(str, after))} "
          f"({spec.profile} slices {spec.thickness:g} mm thick, {spec.spacing:g} mm apart)")
    return 0
